"""Training state beside a checkpoint's model: ``trainer.json`` and ``trainer.safetensors``.

``trainer.json`` holds where training stands (step, epoch, position in the epoch, best
score, …) and the optimizer's hyper-parameters; ``trainer.safetensors`` the optimizer's
moments and torch's random number generator state. Nothing is pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from regard.checkpoint import read_json
from regard.errors import RegardError
from regard.files import write_json


def save_trainer_state(folder: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Optimizer moments + RNG as safetensors, scalars as JSON."""
    opt = optimizer.state_dict()
    tensors = {f"opt.{i}.{name}": value.contiguous() for i, slots in opt["state"].items()
               for name, value in slots.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(folder / "trainer.safetensors"))
    write_json(folder / "trainer.json", {**state, "param_groups": opt["param_groups"]})


def load_trainer_state(folder: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore optimizer and RNG from ``folder``; return the JSON training state."""
    state = read_json(folder / "trainer.json")
    try:
        tensors = load_file(str(folder / "trainer.safetensors"))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise RegardError(f"corrupt checkpoint {folder / 'trainer.safetensors'}: {err}") from None
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    return state
