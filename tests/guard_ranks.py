"""Helpers for tests/test_training_guards.py: training steps whose loss is NaN, in this process
or in rank 1 of a :class:`~regard.training.distributed.LocalRanks` job (a module the spawned
processes can import)."""

from __future__ import annotations

from typing import Any, Callable

from regard.training import trainer
from regard.training.distributed import Ranks


def poison(steps: set[int], rank: int | None = None, grads: bool = True,
           setattr: Callable[[Any, str, Any], None] = setattr) -> None:
    """Make the loss NaN at ``steps`` (on ``rank`` only, if given); ``grads=False`` keeps its
    gradient finite, so that only that rank's loss check can see it."""
    real_step, real_forward = trainer.train_step, trainer.LossOf.forward
    now = [False]

    def step(run, idx, n):
        now[0] = n in steps and (rank is None or run.ranks.rank == rank)
        return real_step(run, idx, n)

    def forward(self, batch, scale, grad_scale):
        loss = real_forward(self, batch, scale, grad_scale)
        if not now[0]:
            return loss
        return loss * float("nan") if grads else loss + float("nan") * loss.detach()

    setattr(trainer, "train_step", step)
    setattr(trainer.LossOf, "forward", forward)


def nan_loss_at(monkeypatch, steps: set[int]) -> None:
    """:func:`poison` in this process, undone after the test."""
    poison(steps, setattr=monkeypatch.setattr)


def nan_on_rank_1(cfg, data, at_step: int) -> None:
    """A LocalRanks target: rank 1's loss (not its gradient) is NaN at ``at_step``."""
    poison({at_step}, rank=1, grads=False)
    trainer.train_rank(cfg, Ranks.from_env(), False, data, False)
