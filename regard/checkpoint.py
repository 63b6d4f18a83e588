"""Checkpoints: safetensors tensors + JSON, one folder each, replaced atomically.

A model folder holds everything needed to translate::

    config.json          the full Config plus vocabulary sizes
    model.safetensors    weights
    src.spm, tgt.spm     SentencePiece models

A training checkpoint (``last/``) adds ``trainer.json`` and ``trainer.safetensors``
(:mod:`regard.training.state`). Nothing is pickled.

Damage is named, never silently loaded: ``config.json`` records the sha256 of the weights
(checked at load; folders saved before it was recorded load unchecked), a tensor of the
wrong shape is named with both shapes, and weights holding NaN or inf are refused, both
when saving and when loading.

This module sits below both training and translation: the trainer saves through it,
:class:`regard.translator.Translator` loads through it. Folders are written with
:func:`regard.files.replace_folder`, so a crash never leaves a half-written one: at
worst the previous version survives as ``.NAME.old``, which :func:`resolve_model_dir`
finds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from regard.config import MAX_INT, Config, ModelConfig, config_from_dict, upgrade
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError
from regard.files import write_json
from regard.model.archs import build_model
from regard.model.base import EncoderDecoder

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"


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


def nonfinite_tensor(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_sha256(path: Path, expected: Any) -> None:
    """Raise :class:`RegardError` if ``path``'s sha256 is not ``expected`` (None: not recorded, not checked)."""
    if expected is None:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise RegardError(f"corrupt checkpoint {path}: its sha256 {actual[:16]}... is not the {str(expected)[:16]}... "
                          "recorded when it was saved (the file was damaged or replaced)")


def save_model_dir(folder: Path, model: EncoderDecoder, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
    """Write the translation-ready part of a checkpoint into ``folder``; weights holding NaN or
    inf are refused (:class:`RegardError`) before anything is written."""
    bad = nonfinite_tensor(model.state_dict())
    if bad is not None:
        raise RegardError(f"refusing to save {folder}: weight '{bad}' holds NaN or inf (training diverged)")
    save_model(model, str(folder / WEIGHTS))
    src_tok.save(folder / "src.spm")
    tgt_tok.save(folder / "tgt.spm")
    meta = {"format": FORMAT_VERSION, "src_vocab": len(src_tok), "tgt_vocab": len(tgt_tok),
            "parameters": model.count_parameters(), "config": cfg.to_dict(),
            "sha256": {WEIGHTS: sha256_file(folder / WEIGHTS)}}
    write_json(folder / "config.json", meta)


def read_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON object; a missing, corrupt or non-object file is a :class:`RegardError`."""
    if not path.is_file():
        raise RegardError(f"checkpoint file missing: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RegardError(f"corrupt checkpoint file {path}: {err}") from None
    except RecursionError:
        raise RegardError(f"corrupt checkpoint file {path}: nested too deeply") from None
    if not isinstance(data, dict):
        raise RegardError(f"corrupt checkpoint file {path}: not a JSON object")
    return data


def skeleton(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> EncoderDecoder:
    """The model ``cfg`` describes, on torch's meta device: its tensors' names and shapes, no memory."""
    with torch.device("meta"):
        return build_model(cfg, src_vocab, tgt_vocab)


def check_shapes(path: Path, model: torch.nn.Module) -> None:
    """Raise :class:`RegardError` naming a tensor of file ``path`` that ``model`` (a :func:`skeleton`
    will do) lacks, or has with another shape (both shapes given)."""
    try:
        with safe_open(str(path), "pt") as weights:
            shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise RegardError(f"corrupt checkpoint {path}: {str(err).splitlines()[0]}") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    for name, shape in expected.items():  # in the model's order: the first layer that differs is named
        if name in shapes and shapes[name] != shape:
            raise RegardError(f"corrupt checkpoint {path}: tensor '{name}' has shape {shapes[name]}, the model "
                              f"its config.json describes needs {shape}")
    unexpected = sorted(shapes.keys() - expected.keys())
    if unexpected:
        raise RegardError(f"corrupt checkpoint {path}: tensor '{unexpected[0]}' is not part of the model its "
                          "config.json describes")


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load ``path`` into ``model``: a tensor the model lacks, has with another shape (both
    shapes named) or misses is an error, and so are weights holding NaN or inf."""
    check_shapes(path, model)
    try:
        load_model(model, str(path), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise RegardError(f"corrupt checkpoint {path}: {' '.join(str(err).split())}") from None
    bad = nonfinite_tensor(model.state_dict())
    if bad is not None:
        raise RegardError(f"broken checkpoint {path}: weight '{bad}' holds NaN or inf (its training diverged); "
                          "use an earlier checkpoint or train again")


def load_model_dir(path: str | Path) -> tuple[EncoderDecoder, Config, Tokenizer, Tokenizer]:
    """Load model, config and tokenizers from a model (or run) folder, in eval mode."""
    folder = resolve_model_dir(path)
    meta = read_json(folder / "config.json")
    try:
        cfg = config_from_dict(upgrade(meta["config"]), source=str(folder / "config.json"))
        src_vocab, tgt_vocab = int(meta["src_vocab"]), int(meta["tgt_vocab"])
        recorded = meta.get("sha256") or {}
        if not isinstance(recorded, dict):
            raise TypeError("'sha256' (not a mapping of file names)")
        expected_sha256 = recorded.get(WEIGHTS)
    except (KeyError, TypeError, ValueError) as err:
        raise RegardError(f"corrupt checkpoint file {folder / 'config.json'}: missing {err}") from None
    if not (1 <= src_vocab <= MAX_INT and 1 <= tgt_vocab <= MAX_INT):
        raise RegardError(f"corrupt checkpoint file {folder / 'config.json'}: vocabulary sizes "
                          f"{src_vocab} and {tgt_vocab}")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise RegardError(f"checkpoint file missing: {weights}")
    verify_sha256(weights, expected_sha256)
    check_shapes(weights, skeleton(cfg.model, src_vocab, tgt_vocab))  # before any memory is taken
    model = build_model(cfg.model, src_vocab, tgt_vocab)
    load_weights(model, weights)
    model.eval()
    src_tok = Tokenizer.load(folder / "src.spm")
    tgt_tok = Tokenizer.load(folder / "tgt.spm")
    if len(src_tok) != src_vocab or len(tgt_tok) != tgt_vocab:
        raise RegardError(f"{folder}: tokenizer sizes do not match the model's vocabularies")
    return model, cfg, src_tok, tgt_tok
