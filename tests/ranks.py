"""Helpers for tests/test_distributed.py: training data on disk, and a rank that fails.

Run as a script under torchrun (``torchrun --nproc_per_node=2 tests/ranks.py CONFIG``), it is
``regard train --config CONFIG`` whose rank 1 raises at step 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regard.data.grammar import demo_splits  # noqa: E402
from regard.errors import RegardError  # noqa: E402
from regard.training import trainer  # noqa: E402
from regard.training.distributed import Ranks  # noqa: E402


def fail_on_rank_1(at_step: int) -> None:
    """Make this process's training step raise at ``at_step`` when it is rank 1."""
    real = trainer.train_step

    def step(run, idx, n):
        if run.ranks.rank == 1 and n == at_step:
            raise RegardError(f"boom at step {n}")
        return real(run, idx, n)

    trainer.train_step = step


def failing_rank(cfg, data, at_step: int) -> None:
    """A :class:`~regard.training.distributed.LocalRanks` target: rank 1 of ``train`` fails."""
    fail_on_rank_1(at_step)
    trainer.train_rank(cfg, Ranks.from_env(), False, data, False)


def write_data(folder: Path, steps: int, eval_every: int, save_every: int = 0) -> Path:
    """Demo-grammar train/valid files and a tiny model's config in ``folder``; the config's path."""
    train_pairs, heldout = demo_splits(n_train=1500, n_heldout=40, seed=5)
    for name, pairs in (("train", train_pairs), ("valid", heldout)):
        for lang in ("en", "fr"):
            (folder / f"{name}.{lang}").write_text("".join(getattr(p, lang) + "\n" for p in pairs), encoding="utf-8")
    config = {
        "data": {"train_src": "train.en", "train_tgt": "train.fr", "valid_src": "valid.en", "valid_tgt": "valid.fr"},
        "tokenizer": {"src_vocab_size": 120, "tgt_vocab_size": 120},
        "model": {"embedding_size": 16, "encoder_hidden": 24, "decoder_hidden": 48, "attention": "general"},
        "search": {"beam": 2},
        "train": {"out_dir": str(folder / "run"), "seed": 3, "batch_tokens": 600, "max_steps": steps,
                  "eval_every": eval_every, "save_every": save_every, "lr": 3e-3, "log_every": 50},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


if __name__ == "__main__":
    from regard.cli import main

    fail_on_rank_1(3)
    raise SystemExit(main(["train", "--config", sys.argv[1]]))
