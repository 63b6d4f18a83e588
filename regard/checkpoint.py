"""Checkpoints: safetensors tensors + JSON, one folder each, replaced atomically.

A model folder holds everything needed to translate::

    config.json          the full Config plus vocabulary sizes
    model.safetensors    weights
    src.spm, tgt.spm     SentencePiece models

A training checkpoint (``last/``) adds ``trainer.json`` and ``trainer.safetensors``
(:mod:`regard.training.state`). Nothing is pickled.

This module sits below both training and translation: the trainer saves through it,
:class:`regard.translator.Translator` loads through it. Folders are written with
:func:`regard.files.replace_folder`, so a crash never leaves a half-written one: at
worst the previous version survives as ``.NAME.old``, which :func:`resolve_model_dir`
finds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from regard.config import Config, config_from_dict, upgrade
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError
from regard.files import write_json
from regard.model.archs import build_model
from regard.model.base import EncoderDecoder

FORMAT_VERSION = 1


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


def save_model_dir(folder: Path, model: EncoderDecoder, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
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


def load_model_dir(path: str | Path) -> tuple[EncoderDecoder, Config, Tokenizer, Tokenizer]:
    """Load model, config and tokenizers from a model (or run) folder, in eval mode."""
    folder = resolve_model_dir(path)
    meta = read_json(folder / "config.json")
    try:
        cfg = config_from_dict(upgrade(meta["config"]), source=str(folder / "config.json"))
        src_vocab, tgt_vocab = int(meta["src_vocab"]), int(meta["tgt_vocab"])
    except (KeyError, TypeError, ValueError) as err:
        raise RegardError(f"corrupt checkpoint file {folder / 'config.json'}: missing {err}") from None
    model = build_model(cfg.model, src_vocab, tgt_vocab)
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
