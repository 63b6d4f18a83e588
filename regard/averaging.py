"""Step checkpoints and their average (``train.keep_checkpoints``, ``regard average``).

With ``train.keep_checkpoints: N`` the trainer keeps, beside ``best/`` and ``last/``, the model
of each of the last N evaluations in ``checkpoints/step-NNNNNN/`` (model folders, written
atomically; the oldest is deleted). :func:`average_checkpoints` writes the element-wise mean of
their parameters as an ordinary model folder: a cheap ensemble in one model, usually a little
better than the last checkpoint alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Sequence

import torch

from regard.checkpoint import load_model_dir, save_model_dir
from regard.errors import RegardError
from regard.files import replace_folder

CHECKPOINTS = "checkpoints"  # the folder of a run that holds its step checkpoints


def step_folder(run: Path, step: int) -> Path:
    """``run/checkpoints/step-000123``."""
    return Path(run) / CHECKPOINTS / f"step-{step:06d}"


def step_checkpoints(run: str | Path) -> list[Path]:
    """The step checkpoints of a run folder (or of its ``checkpoints/`` folder), oldest first."""
    run = Path(run)
    folder = run if run.name == CHECKPOINTS else run / CHECKPOINTS
    found = [p for p in folder.glob("step-*") if p.is_dir() and p.name[5:].isdigit()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[5:]))


def keep_step_checkpoint(run: Path, step: int, keep: int, fill: Callable[[Path], None]) -> None:
    """Write step ``step``'s checkpoint with ``fill`` (atomically), then delete all but the newest ``keep``."""
    target = step_folder(run, step)
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(target, fill)
    for old in step_checkpoints(run)[:-keep]:
        shutil.rmtree(old)


def average_checkpoints(folders: Sequence[Path], out: str | Path) -> Path:
    """Write the parameter mean of the model folders ``folders`` into the model folder ``out``.

    The folders must hold the same model: the same config of ``model`` and the same subword
    models; the average gets the last one's config and tokenizers. Means are taken in float64.
    """
    if not folders:
        raise RegardError("no checkpoints to average")
    out = Path(out)
    if out.exists() and not (out / "config.json").is_file():
        raise RegardError(f"{out} exists and is not a model folder: choose another output folder")
    total: dict[str, torch.Tensor] = {}
    reference = None
    for folder in folders:
        model, cfg, src_tok, tgt_tok = load_model_dir(folder)
        identity = (cfg.model, src_tok.proto, tgt_tok.proto)
        reference = reference or identity
        check_same_model(folders[0], folder, reference, identity)
        for name, value in model.state_dict().items():
            total[name] = total[name] + value.double() if name in total else value.double()
    model.load_state_dict({name: (value / len(folders)).to(model.state_dict()[name].dtype)
                           for name, value in total.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(out, lambda folder: save_model_dir(folder, model, cfg, src_tok, tgt_tok))
    return out


def check_same_model(first: Path, other: Path, expected: tuple, found: tuple) -> None:
    """Raise :class:`RegardError` unless two checkpoints' (model config, subword models) agree."""
    if found[0] != expected[0]:
        raise RegardError(f"cannot average {first} and {other}: their model configs differ")
    if found[1:] != expected[1:]:
        raise RegardError(f"cannot average {first} and {other}: their subword models differ")


def average_run(run: str | Path, out: str | Path, last: int | None = None) -> tuple[Path, list[Path]]:
    """Average the newest ``last`` (all when None) step checkpoints of run folder ``run`` into ``out``;
    returns ``out`` and the checkpoints averaged."""
    found = step_checkpoints(run)
    if not found:
        raise RegardError(f"{run} has no step checkpoints in {CHECKPOINTS}/ (train it with train.keep_checkpoints: N)")
    if last is not None and last < 1:
        raise RegardError(f"--last must be at least 1, got {last}")
    chosen = found[-last:] if last else found
    return average_checkpoints(chosen, out), chosen
