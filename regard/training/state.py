"""Training state beside a checkpoint's model: ``trainer.json`` and ``trainer.safetensors``.

``trainer.json`` holds where training stands (step, epoch, position in the epoch, best
score, …) and the optimizer's hyper-parameters; ``trainer.safetensors`` the optimizer's
moments, whose sha256 ``trainer.json`` records (checked at load). Nothing is pickled, and
nothing depends on the device: the tensors are saved from and loaded to the CPU (the
optimizer moves them to its parameters' device). No random state is kept: each step seeds
its own (:func:`regard.training.trainer.train_step`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from regard.checkpoint import nonfinite_tensor, read_json, sha256_file, verify_sha256
from regard.errors import RegardError
from regard.files import write_json


def save_trainer_state(folder: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Optimizer moments as safetensors, scalars as JSON; moments holding NaN or inf are refused."""
    opt = optimizer.state_dict()
    tensors = {f"opt.{i}.{name}": value.detach().cpu().contiguous() for i, slots in opt["state"].items()
               for name, value in slots.items()}
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise RegardError(f"refusing to save {folder}: optimizer state '{bad}' holds NaN or inf (training diverged)")
    save_file(tensors, str(folder / "trainer.safetensors"))
    write_json(folder / "trainer.json", {**state, "param_groups": opt["param_groups"],
                                         "sha256": sha256_file(folder / "trainer.safetensors")})


def load_trainer_state(folder: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer from ``folder``; return the JSON training state."""
    state = read_json(folder / "trainer.json")
    path = folder / "trainer.safetensors"
    if not path.is_file():
        raise RegardError(f"checkpoint file missing: {path}")
    verify_sha256(path, state.pop("sha256", None))
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise RegardError(f"corrupt checkpoint {path}: {err}") from None
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise RegardError(f"broken checkpoint {path}: optimizer state '{bad}' holds NaN or inf")
    slots: dict[int, dict[str, torch.Tensor]] = {}
    try:
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                slots.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": slots, "param_groups": state.pop("param_groups")})
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise RegardError(f"corrupt checkpoint {folder}: the optimizer state does not fit the model "
                          f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    return state
