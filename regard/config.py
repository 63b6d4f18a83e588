"""Configuration as plain typed dataclasses, loaded from YAML.

Every option lives here with its default, and a number with its allowed range
(:func:`ranged`; any other number must be finite and at least 0);
``configs/example.yaml`` documents them all. :func:`load_config` rejects unknown
keys and values of the wrong type or outside their allowed set or range, naming
the offending key (e.g. ``model.attention``), before any data is read.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
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
MIN_VOCAB = 5  # SentencePiece's 4 reserved pieces (regard.data.tokenizer) and one more
MAX_INT = 2**31 - 1  # no count or size in a config is larger


@dataclass(frozen=True)
class Range:
    """The numbers an option allows: from ``low`` to ``high`` (``None``: unbounded), each end
    included unless ``low_open``/``high_open``; ``off`` is one more value allowed outside them
    that switches the option off. Every number must also be finite."""

    low: float | None = 0
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    off: float | None = None

    def allows(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.off is not None and value == self.off:
            return True
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        """``"in [0, 1)"``, ``"at least 1"``, ``"0 (off) or at least 1"``, ..."""
        if self.high is not None and self.low is not None:
            text = f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'greater than' if self.low_open else 'at least'} {self.low}"
        elif self.high is not None:
            text = f"{'less than' if self.high_open else 'at most'} {self.high}"
        else:
            text = "a finite number"
        return f"{self.off} (off) or {text}" if self.off is not None else text


DEFAULT_RANGE = Range()  # a number without a range of its own: finite and at least 0


def ranged(default: float, low: float | None = 0, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, off: float | None = None) -> Any:
    """A dataclass field whose metadata holds the :class:`Range` of values it allows."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open, off)})


Arch = Literal["rnn", "transformer"]  # model architectures (regard.model.archs.ARCHS)


@dataclass
class DataConfig:
    """Where the parallel text lives. Paths are relative to the config file."""

    train_src: str = ""
    train_tgt: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    max_len: int = ranged(100, 1)  # training pairs longer than this (in subwords) are skipped
    valid_max_sentences: int = ranged(500, 1)  # BLEU on at most this many valid sentences, evenly spaced
    corpus: str = ""  # a fetched corpus (regard data fetch NAME): fills train/valid paths left empty
    max_words: int = 80  # cleaning: drop training pairs with more words on a side; 0 = no limit
    max_ratio: float = ranged(4.0, 1, off=0)  # cleaning: drop pairs whose longer side has > this × the chars; 0 = off
    dedupe: bool = True  # cleaning: drop exact duplicate training pairs
    # folder of the binarised training data (regard data prepare; regard train makes it when missing
    # or stale); empty = <train.out_dir>/data
    prepared: str = ""
    # word links of the training pairs (Pharaoh "i-j" lines, line-aligned with the training files, over
    # their whitespace-separated words), for train.guided_alignment_weight; empty = none
    train_links: str = ""


@dataclass
class TokenizerConfig:
    """SentencePiece subword models, one per language, trained on the training data."""

    type: Literal["unigram", "bpe"] = "unigram"
    src_vocab_size: int = ranged(8000, MIN_VOCAB)
    tgt_vocab_size: int = ranged(8000, MIN_VOCAB)
    character_coverage: float = ranged(1.0, 0, 1, low_open=True)
    max_training_sentences: int = ranged(500000, 1)


@dataclass
class ModelConfig:
    """The encoder–decoder: ``arch`` rnn (``attention: none`` gives the traditional model) or transformer.

    Both: ``encoder_layers``, ``decoder_layers``, ``dropout``, ``tied_embeddings``. RNN only:
    ``rnn``, ``embedding_size``, ``encoder_hidden``, ``bidirectional``, ``decoder_hidden``,
    ``attention``, ``input_feeding``, ``init_range``. Transformer only: the keys after ``init_range``.
    """

    arch: Arch = "rnn"
    rnn: RNNType = "gru"
    embedding_size: int = ranged(256, 1)
    encoder_hidden: int = ranged(256, 1)  # per direction
    encoder_layers: int = ranged(1, 1)
    bidirectional: bool = True
    decoder_hidden: int = ranged(512, 1)
    decoder_layers: int = ranged(1, 1)
    attention: Scorer = "concat"  # best of the three on Multi30k (docs/RESULTS.md)
    input_feeding: bool = True
    dropout: float = ranged(0.2, 0, 1, high_open=True)
    tied_embeddings: bool = False  # decoder input and output embeddings share weights
    init_range: float = 0.1  # uniform(-r, r) initialisation; 0 keeps PyTorch defaults
    # Transformer only (arch: transformer); encoder_layers, decoder_layers, dropout and tied_embeddings apply too
    d_model: int = ranged(256, 1)  # embedding and model size
    heads: int = ranged(4, 1)  # attention heads per layer (d_model must be a multiple)
    ff_size: int = ranged(1024, 1)  # inner size of the feed-forward blocks
    attention_dropout: float = ranged(0.1, 0, 1, high_open=True)  # dropout on the attention weights
    shared_embeddings: bool = False  # one embedding table for source and target (needs equal vocabulary sizes)
    attention_layer: int = 0  # decoder layer (1 = first) whose cross-attention, head-averaged, is shown; 0 = last

    @property
    def attention_kind(self) -> str:
        """The RNN's scorer (``none``: no attention), or ``multi-head`` for the Transformer."""
        return self.attention if self.arch == "rnn" else "multi-head"


@dataclass
class SearchConfig:
    """Decoding used for validation BLEU and as the default for translation."""

    beam: int = ranged(5, 1)
    length_penalty: float = 1.0  # GNMT alpha; 0 disables
    max_ratio: float = ranged(2.0, 0, low_open=True)  # max output subwords = max_ratio * source subwords + 4
    # beam search: "exact" (provably the best) or "first" (OpenNMT-py's rule: fewer steps)
    stopping: Stopping = "exact"


@dataclass
class TrainConfig:
    """The training loop."""

    out_dir: str = "runs/model"
    seed: int = 1
    device: str = "auto"  # auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps
    precision: Literal["fp32", "bf16", "fp16", "mixed"] = "fp32"  # autocast; mixed = bf16 where the hardware has it, else fp16 (CUDA) or fp32
    threads: int = 0  # torch threads per process; 0 = the cores divided by the processes on this machine
    workers: int = ranged(1, 1)  # processes on this machine, each with a share of every batch (DDP); torchrun: its own
    grad_compression: Literal["none", "bf16", "fp16"] = "none"  # gradients sent between processes in this dtype
    batch_tokens: int = ranged(2000, 1)  # target tokens per batch (padding included), over all processes
    max_steps: int = ranged(20000, 1)
    max_epochs: int = ranged(100, 1)
    max_minutes: float = 0.0  # stop after this much training time; 0 = no limit
    lr: float = ranged(1e-3, 0, low_open=True)
    warmup_steps: int = 0
    schedule: Literal["constant", "inverse_sqrt", "linear"] = "constant"
    min_lr: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = ranged(0.1, 0, 1, high_open=True)
    kernel_cache: int = 16  # CPU: oneDNN kernels kept per process (bf16 memory); 0 = torch's default (1,024)
    eval_every: int = ranged(1000, 1)
    save_every: int = 0  # also save last/ every this many steps (what a crash can lose); 0 = at evaluations only
    eval_beam: int = ranged(1, 1)  # beam used for validation BLEU (1 = greedy, fastest)
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    log: Literal["csv", "tensorboard"] = "csv"
    log_every: int = 0  # a progress line every this many steps; 0 = a bar on a terminal, else a line every 30 s
    keep_best_by: Literal["bleu", "loss"] = "bleu"
    skip_nonfinite: int = 0  # steps with a NaN/inf loss or gradient that may be skipped; 0 = stop at the first
    keep_checkpoints: int = 0  # also keep the model of the last N evaluations in checkpoints/ (regard average)
    # guided alignment (Chen et al. 2016): λ of the loss pulling the attention shown toward data.train_links; 0 = off
    guided_alignment_weight: float = ranged(0.0, 0)


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
    except RecursionError:
        raise RegardError(f"{path}: nested too deeply to be a config") from None
    if not isinstance(raw, (dict, type(None))):
        raise RegardError(f"{path}: the top level must be a mapping of sections, got {shown(raw)}")
    cfg = config_from_dict(apply_overrides(raw or {}, list(overrides)), source=str(path))
    for name in ("train_src", "train_tgt", "valid_src", "valid_tgt", "prepared", "train_links"):
        value = getattr(cfg.data, name)
        if value and not Path(value).is_absolute():
            setattr(cfg.data, name, str((path.parent / value).resolve()))
    return cfg


RENAMED = {"train.bf16": "train.precision"}  # old key → its replacement (models saved before the rename)


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A saved model's config with renamed keys written the current way (``train.bf16: true``
    → ``train.precision: bf16``), so that models trained by earlier versions still load."""
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), dict):
        return raw  # nothing to upgrade; the checks say what is wrong with it
    train = dict(raw["train"])
    if "bf16" in train:
        train["precision"] = "bf16" if train.pop("bf16") else train.get("precision", "fp32")
    return {**raw, "train": train}


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a one-line message: at most ``limit`` characters, however large or
    deeply nested (or YAML-aliased) ``value`` is."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, limit, limit
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
            raise RegardError(f"{source}: '{key}' must be one of {list(choices)}, got {shown(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        raise TypeError("union types are not used in Config")  # pragma: no cover
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise RegardError(f"{source}: '{key}' must be true or false, got {shown(value)}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RegardError(f"{source}: '{key}' must be an integer, got {shown(value)}")
    if not isinstance(value, kind):
        raise RegardError(f"{source}: '{key}' must be {kind.__name__}, got {shown(value)}")
    if isinstance(value, str) and "\x00" in value:
        raise RegardError(f"{source}: '{key}' must not contain a NUL character, got {shown(value)}")
    return value


def check_ranges(cfg: Any, source: str = "config", prefix: str = "") -> None:
    """Every number of ``cfg`` (a :class:`Config` or one of its sections) within the :class:`Range`
    its field declares (:data:`DEFAULT_RANGE` if none); a :class:`RegardError` naming the first that is not."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, source, f"{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            allowed = f.metadata.get("range", DEFAULT_RANGE)
            if isinstance(value, int) and abs(value) > MAX_INT:
                raise RegardError(f"{source}: '{key}' must be {allowed.describe()} and at most {MAX_INT}, "
                                  f"got {value:.3g}")
            if not allowed.allows(value):
                finite = "" if math.isfinite(value) else "a finite number "
                raise RegardError(f"{source}: '{key}' must be {finite}{allowed.describe()}, got {value}")


def validate(cfg: Config, source: str = "config") -> None:
    """Check value ranges (:func:`check_ranges`) and combinations that types alone cannot express."""
    m = cfg.model
    check_ranges(cfg, source)
    check_device_name(cfg.train.device, f"{source}: 'train.device'")
    if m.arch == "transformer":
        check_transformer(m, source)
    enc_out = m.encoder_hidden * (2 if m.bidirectional else 1)
    if m.arch == "rnn" and m.attention == "dot" and enc_out != m.decoder_hidden:
        raise RegardError(
            f"{source}: 'model.attention: dot' needs encoder outputs ({enc_out}) "
            f"the size of the decoder state (model.decoder_hidden = {m.decoder_hidden})")
    if m.arch == "rnn" and m.tied_embeddings and m.embedding_size != m.decoder_hidden:
        raise RegardError(
            f"{source}: 'model.tied_embeddings' needs model.embedding_size == model.decoder_hidden "
            f"({m.embedding_size} != {m.decoder_hidden})")
    check_guided(cfg, source)


def check_guided(cfg: Config, source: str = "config") -> None:
    """Guided alignment needs links of the training pairs and a model with attention."""
    weight = cfg.train.guided_alignment_weight
    if weight and not cfg.data.train_links:
        raise RegardError(f"{source}: 'train.guided_alignment_weight' is {weight} but 'data.train_links' is not set: "
                          "guided alignment needs word links of the training pairs (python -m bench.alignment guide "
                          "makes them with eflomal)")
    if weight and cfg.model.attention_kind == "none":
        raise RegardError(f"{source}: 'train.guided_alignment_weight' needs attention to guide "
                          "('model.attention' is none)")


def check_transformer(m: ModelConfig, source: str = "config") -> None:
    """The Transformer's combinations (sizes are ranged fields): heads dividing d_model, the
    attention layer shown."""
    if m.d_model % m.heads:
        raise RegardError(f"{source}: 'model.d_model' ({m.d_model}) must be a multiple of 'model.heads' ({m.heads})")
    if not 0 <= m.attention_layer <= m.decoder_layers:
        raise RegardError(f"{source}: 'model.attention_layer' must be from 1 to model.decoder_layers "
                          f"({m.decoder_layers}), or 0 for the last, got {m.attention_layer}")
