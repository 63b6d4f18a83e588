"""Configuration as plain typed dataclasses, loaded from YAML.

Every option lives here with its default; ``configs/example.yaml`` documents
them all. :func:`load_config` rejects unknown keys and values of the wrong
type or outside their allowed set, naming the offending key
(e.g. ``model.attention``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from regard.device import check_device_name
from regard.errors import RegardError

RNNType = Literal["gru", "lstm"]
Scorer = Literal["dot", "general", "concat", "none"]
Stopping = Literal["exact", "first"]  # beam search's stopping rules (regard.search.beam)


@dataclass
class DataConfig:
    """Where the parallel text lives. Paths are relative to the config file."""

    train_src: str = ""
    train_tgt: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    max_len: int = 100  # training pairs longer than this (in subwords) are skipped
    valid_max_sentences: int = 500  # BLEU on at most this many valid sentences, evenly spaced
    corpus: str = ""  # a fetched corpus (regard data fetch NAME): fills train/valid paths left empty
    max_words: int = 80  # cleaning: drop training pairs with more words on a side; 0 = no limit
    max_ratio: float = 4.0  # cleaning: drop pairs whose longer side has > this × the characters; 0 = off
    dedupe: bool = True  # cleaning: drop exact duplicate training pairs
    # folder of the binarised training data (regard data prepare; regard train makes it when missing
    # or stale); empty = <train.out_dir>/data
    prepared: str = ""


@dataclass
class TokenizerConfig:
    """SentencePiece subword models, one per language, trained on the training data."""

    type: Literal["unigram", "bpe"] = "unigram"
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    character_coverage: float = 1.0
    max_training_sentences: int = 500000


@dataclass
class ModelConfig:
    """The encoder–decoder. ``attention: none`` gives the traditional model."""

    rnn: RNNType = "gru"
    embedding_size: int = 256
    encoder_hidden: int = 256  # per direction
    encoder_layers: int = 1
    bidirectional: bool = True
    decoder_hidden: int = 512
    decoder_layers: int = 1
    attention: Scorer = "concat"  # best of the three on Multi30k (docs/RESULTS.md)
    input_feeding: bool = True
    dropout: float = 0.2
    tied_embeddings: bool = False  # decoder input and output embeddings share weights
    init_range: float = 0.1  # uniform(-r, r) initialisation; 0 keeps PyTorch defaults


@dataclass
class SearchConfig:
    """Decoding used for validation BLEU and as the default for translation."""

    beam: int = 5
    length_penalty: float = 1.0  # GNMT alpha; 0 disables
    max_ratio: float = 2.0  # max output subwords = max_ratio * source subwords + 4
    # beam search: "exact" (provably the best) or "first" (OpenNMT-py's rule: fewer steps)
    stopping: Stopping = "exact"


@dataclass
class TrainConfig:
    """The training loop."""

    out_dir: str = "runs/model"
    seed: int = 1
    device: str = "auto"  # auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps
    precision: Literal["fp32", "bf16", "fp16", "mixed"] = "fp32"  # autocast; mixed = bf16 where supported, else fp16
    threads: int = 0  # torch threads per process; 0 = the cores divided by the processes on this machine
    workers: int = 1  # processes on this machine, each taking a share of every batch (DDP); torchrun sets its own
    grad_compression: Literal["none", "bf16", "fp16"] = "none"  # gradients sent between processes in this dtype
    batch_tokens: int = 2000  # target tokens per batch (padding included), over all processes
    max_steps: int = 20000
    max_epochs: int = 100
    max_minutes: float = 0.0  # stop after this much training time; 0 = no limit
    lr: float = 1e-3
    warmup_steps: int = 0
    schedule: Literal["constant", "inverse_sqrt", "linear"] = "constant"
    min_lr: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    kernel_cache: int = 16  # CPU: oneDNN kernels kept per process (bf16 memory); 0 = torch's default (1,024)
    eval_every: int = 1000
    save_every: int = 0  # also save last/ every this many steps (what a crash can lose); 0 = at evaluations only
    eval_beam: int = 1  # beam used for validation BLEU (1 = greedy, fastest)
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    log: Literal["csv", "tensorboard"] = "csv"
    log_every: int = 0  # a progress line every this many steps; 0 = a bar on a terminal, else a line every 30 s
    keep_best_by: Literal["bleu", "loss"] = "bleu"


@dataclass
class Config:
    """The whole configuration tree."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML serialisable)."""
        return dataclasses.asdict(self)


def differing_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """``SECTION.KEY`` names whose values differ between two :meth:`Config.to_dict` trees."""
    keys = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += differing_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.append(f"{prefix}{key}")
    return keys


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.threads=1", "model.attention=dot"]`` → ``raw`` with those values (YAML-parsed) set."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise RegardError(f"override {item!r}: expected SECTION.KEY=VALUE, e.g. train.threads=1")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RegardError(f"override {item!r}: not a YAML value: {err}") from None
        section = raw.setdefault(parts[0], {})
        if not isinstance(section, dict):
            raise RegardError(f"override {item!r}: '{parts[0]}' is not a section")
        section[parts[1]] = value
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config file, then apply ``SECTION.KEY=VALUE`` overrides; relative data
    paths resolve against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise RegardError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RegardError(f"{path}: not valid YAML: {err}") from None
    cfg = config_from_dict(apply_overrides(raw or {}, list(overrides)), source=str(path))
    for name in ("train_src", "train_tgt", "valid_src", "valid_tgt", "prepared"):
        value = getattr(cfg.data, name)
        if value and not Path(value).is_absolute():
            setattr(cfg.data, name, str((path.parent / value).resolve()))
    return cfg


RENAMED = {"train.bf16": "train.precision"}  # old key → its replacement (models saved before the rename)


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A saved model's config with renamed keys written the current way (``train.bf16: true``
    → ``train.precision: bf16``), so that models trained by earlier versions still load."""
    train = dict(raw.get("train") or {})
    if "bf16" in train:
        train["precision"] = "bf16" if train.pop("bf16") else train.get("precision", "fp32")
    return {**raw, "train": train} if "train" in raw else raw


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Build a :class:`Config` from nested dicts, checking every key and value."""
    cfg = _build(Config, raw, prefix="", source=source)
    validate(cfg, source)
    return cfg


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise RegardError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            if f"{prefix}{key}" in RENAMED:
                hint = f" (it is now '{RENAMED[prefix + key]}')"
            raise RegardError(f"{source}: unknown key '{prefix}{key}'{hint}; allowed: {', '.join(names)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _check_value(kind, value, f"{prefix}{key}", source)
    return cls(**kwargs)


def _check_value(kind: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(kind)
    if origin is Literal:
        choices = get_args(kind)
        if value not in choices:
            raise RegardError(f"{source}: '{key}' must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        raise TypeError("union types are not used in Config")  # pragma: no cover
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise RegardError(f"{source}: '{key}' must be true or false, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RegardError(f"{source}: '{key}' must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise RegardError(f"{source}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def validate(cfg: Config, source: str = "config") -> None:
    """Check value ranges and combinations that types alone cannot express."""
    m, t, s = cfg.model, cfg.train, cfg.search
    positive = {
        "model.embedding_size": m.embedding_size, "model.encoder_hidden": m.encoder_hidden,
        "model.encoder_layers": m.encoder_layers, "model.decoder_hidden": m.decoder_hidden,
        "model.decoder_layers": m.decoder_layers, "train.batch_tokens": t.batch_tokens,
        "train.max_steps": t.max_steps, "train.eval_every": t.eval_every, "search.beam": s.beam,
        "train.workers": t.workers, "data.valid_max_sentences": cfg.data.valid_max_sentences,
        "tokenizer.src_vocab_size": cfg.tokenizer.src_vocab_size,
        "tokenizer.tgt_vocab_size": cfg.tokenizer.tgt_vocab_size, "data.max_len": cfg.data.max_len,
        "train.lr": t.lr, "search.max_ratio": s.max_ratio, "train.eval_beam": t.eval_beam,
    }
    for key, value in positive.items():
        if value <= 0:
            raise RegardError(f"{source}: '{key}' must be positive, got {value}")
    if cfg.data.max_words < 0 or (cfg.data.max_ratio and cfg.data.max_ratio < 1):
        raise RegardError(f"{source}: 'data.max_words' must be >= 0 and 'data.max_ratio' 0 or >= 1")
    for key in ("kernel_cache", "save_every", "log_every", "threads"):
        if getattr(t, key) < 0:
            raise RegardError(f"{source}: 'train.{key}' must be >= 0, got {getattr(t, key)}")
    check_device_name(t.device, f"{source}: 'train.device'")
    if not 0.0 <= m.dropout < 1.0:
        raise RegardError(f"{source}: 'model.dropout' must be in [0, 1), got {m.dropout}")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise RegardError(f"{source}: 'train.label_smoothing' must be in [0, 1), got {t.label_smoothing}")
    enc_out = m.encoder_hidden * (2 if m.bidirectional else 1)
    if m.attention == "dot" and enc_out != m.decoder_hidden:
        raise RegardError(
            f"{source}: 'model.attention: dot' needs encoder outputs ({enc_out}) "
            f"the size of the decoder state (model.decoder_hidden = {m.decoder_hidden})")
    if m.tied_embeddings and m.embedding_size != m.decoder_hidden:
        raise RegardError(
            f"{source}: 'model.tied_embeddings' needs model.embedding_size == model.decoder_hidden "
            f"({m.embedding_size} != {m.decoder_hidden})")
