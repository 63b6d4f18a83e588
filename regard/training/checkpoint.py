"""Checkpoints: safetensors tensors + JSON, one folder each, replaced atomically.

A model folder holds everything needed to translate::

    config.json          the full Config plus vocabulary sizes
    model.safetensors    weights
    src.spm, tgt.spm     SentencePiece models

A training checkpoint (``best/``, ``last/``) adds ``trainer.json`` (step,
epoch, position in the epoch, best score, …) and ``trainer.safetensors``
(optimizer moments and the RNG state). Nothing is pickled.

A folder is written under a temporary name, flushed, and swapped in with
renames, so a crash never leaves a half-written ``last``: at worst the previous
version survives as ``.last.old`` and :func:`resolve_model_dir` finds it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from regard.config import Config, config_from_dict
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError
from regard.model.seq2seq import Seq2Seq

FORMAT_VERSION = 1


def write_atomically(target: Path, fill: Callable[[Path], None]) -> None:
    """Create folder ``target`` by letting ``fill`` write into a temporary one, then swap."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    for f in tmp.iterdir():
        with f.open("rb") as handle:
            os.fsync(handle.fileno())
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, a training run folder (its ``best/``), or a leftover ``.X.old``."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last"):
        if (candidate / "config.json").is_file():
            return candidate
        old = candidate.with_name(f".{candidate.name}.old")
        if (old / "config.json").is_file():
            return old
    if not path.exists():
        raise RegardError(f"model folder not found: {path}")
    raise RegardError(f"{path} is not a Regard model folder (no config.json, best/ or last/)")


def save_model_dir(folder: Path, model: Seq2Seq, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
    """Write the translation-ready part of a checkpoint into ``folder``."""
    meta = {"format": FORMAT_VERSION, "src_vocab": len(src_tok), "tgt_vocab": len(tgt_tok),
            "parameters": model.count_parameters(), "config": cfg.to_dict()}
    write_json(folder / "config.json", meta)
    save_model(model, str(folder / "model.safetensors"))
    src_tok.save(folder / "src.spm")
    tgt_tok.save(folder / "tgt.spm")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RegardError(f"checkpoint file missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RegardError(f"corrupt checkpoint file {path}: {err}") from None


def load_model_dir(path: str | Path) -> tuple[Seq2Seq, Config, Tokenizer, Tokenizer]:
    """Load model, config and tokenizers from a model (or run) folder, in eval mode."""
    folder = resolve_model_dir(path)
    meta = read_json(folder / "config.json")
    try:
        cfg = config_from_dict(meta["config"], source=str(folder / "config.json"))
        src_vocab, tgt_vocab = int(meta["src_vocab"]), int(meta["tgt_vocab"])
    except (KeyError, TypeError, ValueError) as err:
        raise RegardError(f"corrupt checkpoint file {folder / 'config.json'}: missing {err}") from None
    model = Seq2Seq(cfg.model, src_vocab, tgt_vocab)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise RegardError(f"checkpoint file missing: {weights}")
    try:
        load_model(model, str(weights), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise RegardError(f"corrupt checkpoint {weights}: {str(err).splitlines()[0]}") from None
    model.eval()
    src_tok = Tokenizer.load(folder / "src.spm")
    tgt_tok = Tokenizer.load(folder / "tgt.spm")
    if len(src_tok) != src_vocab or len(tgt_tok) != tgt_vocab:
        raise RegardError(f"{folder}: tokenizer sizes do not match the model's vocabularies")
    return model, cfg, src_tok, tgt_tok


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
