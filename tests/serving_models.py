"""Tiny models for the serving and browser tests, trained once per test session.

Both test files ask for the same folders; a model already trained in this
session's temporary folder is reused, so the training happens only once.
"""

from __future__ import annotations

from pathlib import Path

from regard.config import Config, ModelConfig, SearchConfig, TokenizerConfig, TrainConfig
from regard.data.grammar import demo_splits
from regard.training.trainer import train

# ~300 steps of the small grammar: enough for "the black cat ate the mouse" →
# "le chat noir a mangé la souris" with a sharp alignment; the "none" model only
# has to write French-looking sentences. One thread: several times faster than
# two when other processes share the 2 cores.
STEPS = {"general": 300, "none": 100}


def serving_config(out: Path, attention: str) -> Config:
    return Config(
        tokenizer=TokenizerConfig(src_vocab_size=200, tgt_vocab_size=200),
        model=ModelConfig(embedding_size=32, encoder_hidden=64, decoder_hidden=128, attention=attention, dropout=0.0),
        search=SearchConfig(beam=5),
        train=TrainConfig(out_dir=str(out), seed=1, threads=1, batch_tokens=1500, max_steps=STEPS[attention],
                          eval_every=STEPS[attention], lr=5e-3, label_smoothing=0.0),
    )


def trained_model(root: Path, attention: str) -> Path:
    """The model folder for ``attention`` under ``root``, trained if not there yet."""
    out = root / f"serving-{attention}"
    if not (out / "best" / "config.json").is_file():
        train_pairs, heldout = demo_splits(n_train=3000, n_heldout=20)
        data = ([(p.en, p.fr) for p in train_pairs], [(p.en, p.fr) for p in heldout])
        train(serving_config(out, attention), data=data, show_progress=False)
    return out / "best"


def model_root(tmp_path_factory) -> Path:
    """A folder shared by every test module of the session."""
    return tmp_path_factory.getbasetemp() / "serving-models"
