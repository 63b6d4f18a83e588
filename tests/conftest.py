"""Shared fixtures: tiny seeded models, fast enough for every test run."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: no spinning on busy CPUs

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from regard.config import Config, ModelConfig, SearchConfig, TokenizerConfig, TrainConfig
from regard.data.grammar import demo_splits
from regard.model.base import EncoderDecoder
from regard.model.seq2seq import Seq2Seq
from regard.model.transformer import Transformer
from regard.training.trainer import train

torch.set_num_threads(2)


def tiny_config(out: Path, attention: str = "general", steps: int = 60, **model) -> Config:
    """A model of about 40,000 parameters (on the grammar data) that trains in seconds."""
    return Config(
        tokenizer=TokenizerConfig(src_vocab_size=120, tgt_vocab_size=120),
        model=ModelConfig(**{"embedding_size": 16, "encoder_hidden": 24, "decoder_hidden": 48,
                             "attention": attention, "dropout": 0.1, **model}),
        search=SearchConfig(beam=3),
        train=TrainConfig(out_dir=str(out), seed=3, batch_tokens=600, max_steps=steps, eval_every=max(1, steps // 2),
                          lr=3e-3, label_smoothing=0.1),
    )


@pytest.fixture(scope="session")
def grammar_data() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    train_pairs, heldout = demo_splits(n_train=1500, n_heldout=40, seed=5)
    return [(p.en, p.fr) for p in train_pairs], [(p.en, p.fr) for p in heldout]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, grammar_data) -> Path:
    """A tiny attention model trained for 60 steps (run folder with best/ and last/)."""
    out = tmp_path_factory.mktemp("run") / "att"
    train(tiny_config(out), data=grammar_data, show_progress=False)
    return out


def random_model(attention: str = "general", rnn: str = "gru", vocab: int = 13, seed: int = 0, **model) -> Seq2Seq:
    """An untrained, seeded model in eval mode (for search and shape tests)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"embedding_size": 8, "encoder_hidden": 6, "decoder_hidden": 12, "attention": attention,
                         "rnn": rnn, "dropout": 0.0, "init_range": 0.5, **model})
    return Seq2Seq(cfg, vocab, vocab).eval()


def random_transformer(vocab: int = 13, seed: int = 0, **model) -> Transformer:
    """An untrained, seeded 2+2-layer Transformer of model size 16 and 2 heads, in eval mode."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"arch": "transformer", "d_model": 16, "heads": 2, "ff_size": 32, "encoder_layers": 2,
                         "decoder_layers": 2, "dropout": 0.0, "attention_dropout": 0.0, **model})
    return Transformer(cfg, vocab, vocab).eval()


def random_arch(arch: str, seed: int = 0, vocab: int = 13) -> EncoderDecoder:
    """:func:`random_model` (general attention) or :func:`random_transformer`, by ``model.arch``."""
    return random_model("general", vocab=vocab, seed=seed) if arch == "rnn" else random_transformer(vocab, seed)


def random_batch(batch: int = 3, vocab: int = 13, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded source ids (ids ≥ 4) with different lengths, and their lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 3, 7, 1, 4, 6][:batch])
    src = torch.zeros(batch, int(lengths.max()), dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, lengths


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A SentencePiece model of about 60 pieces of the grammar's French (for model folders)."""
    from regard.data.tokenizer import Tokenizer
    train_pairs, _ = demo_splits(n_train=300, n_heldout=2, seed=1)
    return Tokenizer.train([p.fr for p in train_pairs], 60)


def save_random(folder: Path, model: EncoderDecoder, tokenizer) -> Path:
    """Write ``model`` as a model folder whose source and target subwords are ``tokenizer``."""
    from regard.checkpoint import save_model_dir
    folder.mkdir(parents=True, exist_ok=True)
    save_model_dir(folder, model, Config(model=model.cfg), tokenizer, tokenizer)
    return folder
