"""Guided alignment: word links follow their pairs into the prepared data, become the guide of
each batch, and pull a model's attention toward them; the config and file errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from regard.alignment.forced import align_pairs
from regard.alignment.guide import guided_loss
from regard.alignment.links import format_pharaoh, parse_pharaoh
from regard.config import config_from_dict
from regard.data.binarise import FileSource, open_prepared, prepare, prepared_dir, stale_reason
from regard.data.guides import batch_guide, word_of_piece
from regard.data.tokenizer import EOS, PAD
from regard.errors import RegardError
from regard.training.trainer import train
from regard.translator import Translator
from tests.conftest import tiny_config

TRANSFORMER = {"arch": "transformer", "d_model": 32, "heads": 2, "ff_size": 64, "encoder_layers": 1,
               "decoder_layers": 1, "attention_dropout": 0.0}


def reversed_links(src: str, tgt: str) -> set[tuple[int, int]]:
    """Target word j linked to the source word as far from the start as j's proportional place
    is from the end: the opposite of the grammar's nearly monotone order, so a model whose
    attention follows them has been guided, not left to itself."""
    ns, nt = len(src.split()), len(tgt.split())
    return {(ns - 1 - min(ns - 1, j * ns // nt), j) for j in range(nt)}


def write_corpus(folder: Path, train_pairs, valid_pairs, links: list[str]) -> dict[str, str]:
    """Training and validation files and the links file; the config's data paths."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", train_pairs), ("valid", valid_pairs)):
        for side, lang in ((0, "en"), (1, "fr")):
            (folder / f"{name}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
    (folder / "train.links").write_text("".join(line + "\n" for line in links), encoding="utf-8")
    return {"train_src": str(folder / "train.en"), "train_tgt": str(folder / "train.fr"),
            "valid_src": str(folder / "valid.en"), "valid_tgt": str(folder / "valid.fr"),
            "train_links": str(folder / "train.links")}


def guided_config(out: Path, files: dict[str, str], weight: float, steps: int = 60, **model):
    cfg = tiny_config(out, steps=steps, **model)
    for key, value in files.items():
        setattr(cfg.data, key, value)
    cfg.train.guided_alignment_weight, cfg.train.eval_every = weight, steps
    cfg.data.valid_max_sentences = 5
    return cfg


# ---------------------------------------------------------------- links into the prepared data

def test_links_follow_their_pairs_through_cleaning_and_length_filtering(tmp_path, grammar_data):
    """Every prepared pair has the links of the line it came from; duplicates (whose links differ
    from their originals'), a pair with an empty side and one too long for data.max_len are
    dropped with theirs."""
    pairs = grammar_data[0][:120]
    long = (" ".join(["the cat"] * 40), " ".join(["le chat"] * 40))
    raw = pairs[:60] + pairs[:5] + [("", "rien"), long] + pairs[60:]
    links = [format_pharaoh({(0, j) for j in range(min(k % 4 + 1, len(t.split())))}) if s else ""
             for k, (s, t) in enumerate(raw)]
    links[60:65] = ["0-0 1-1"] * 5  # the duplicates' links differ from their originals'
    cfg = tiny_config(tmp_path / "run")
    for key, value in write_corpus(tmp_path, raw, grammar_data[1][:5], links).items():
        setattr(cfg.data, key, value)
    cfg.tokenizer.src_vocab_size = cfg.tokenizer.tgt_vocab_size = 60
    cfg.data.max_len = 75
    manifest = prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0, shard_tokens=800)
    assert manifest["cleaning"]["exact duplicate"] == 5 and manifest["dropped_by_max_len"] == 1
    assert len(manifest["shards"]) > 2  # pairs and links split across shards alike
    prepared = open_prepared(prepared_dir(cfg))
    src_tok, tgt_tok = prepared.tokenizers
    first_line = {}
    for k, pair in enumerate(raw):
        first_line.setdefault(pair, k)
    found = prepared.pairs.links(np.arange(len(prepared.pairs)))
    assert len(found) == len(pairs)
    for i, got in enumerate(found):
        s, t = prepared.pairs.pair(i)
        line = first_line[(src_tok.decode(s.tolist()), tgt_tok.decode(t.tolist()))]
        assert {tuple(x) for x in got.tolist()} == parse_pharaoh(links[line]), f"pair {i}"


def test_a_changed_links_file_makes_the_prepared_data_stale(tmp_path, grammar_data):
    pairs = grammar_data[0][:80]
    files = write_corpus(tmp_path, pairs, grammar_data[1][:5], ["0-0"] * len(pairs))
    cfg = guided_config(tmp_path / "run", files, 1.0)
    cfg.tokenizer.src_vocab_size = cfg.tokenizer.tgt_vocab_size = 60
    prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0)
    assert stale_reason(cfg, FileSource.from_config(cfg)) is None
    Path(files["train_links"]).write_text("0-1\n" * len(pairs))
    assert "train.links has changed (same size, other content)" in stale_reason(cfg, FileSource.from_config(cfg))
    Path(files["train_links"]).write_text("0-0 1-1\n" * len(pairs))
    assert "train.links has changed" in stale_reason(cfg, FileSource.from_config(cfg))
    cfg.data.train_links = ""
    assert stale_reason(cfg, FileSource.from_config(cfg)) == "it was prepared with word links (data.train_links)"


# ---------------------------------------------------------------- the guide of a batch

def test_the_guide_of_hand_made_pairs():
    """Pieces 5, 7, 8, 9 open a word, 6 and 10 continue one. Pair 0: source words "5 6 | 7",
    target "8 | 9 10", links 0-1 and 1-0; pair 1 (shorter, padded) has one link."""
    starts = np.zeros(12, dtype=bool)
    starts[[5, 7, 8, 9]] = True
    src = np.array([[5, 6, 7], [7, 6, PAD]])
    tgt_out = np.array([[8, 9, 10, EOS], [9, EOS, PAD, PAD]])
    links = [np.array([[0, 1], [1, 0]]), np.array([[0, 0], [3, 0], [0, 5]])]  # 3-0 and 0-5: beyond the words
    guide = batch_guide(src, tgt_out, links, (starts, starts))
    assert guide.shape == (2, 4, 3) and guide.dtype == np.float32
    assert guide[0].tolist() == [[0, 0, 1], [0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 0]]  # </s>: not guided
    assert guide[1].tolist() == [[0.5, 0.5, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]  # padding: not guided
    attention = torch.softmax(torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    target = torch.from_numpy(guide)
    per_row, per_token = guided_loss(attention, target), guided_loss(attention, target, tokens=6)
    assert float(per_token) == pytest.approx(float(per_row) * 4 / 6)  # 4 guided rows; training divides by tokens


def test_words_of_pieces_are_the_tokenizers_words(tiny_tokenizer):
    starts = tiny_tokenizer.word_starts()
    for text in ("le chat noir a mangé la souris", "les filles grises", "xyz"):
        ids = tiny_tokenizer.encode(text)
        assert word_of_piece(np.array(ids), starts).tolist() == tiny_tokenizer.words(ids)[1]


# ---------------------------------------------------------------- training

@pytest.fixture(scope="module")
def reversed_corpus(tmp_path_factory, grammar_data) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("guided")
    pairs = grammar_data[0]
    return folder, write_corpus(folder, pairs, grammar_data[1][:5],
                                [format_pharaoh(reversed_links(s, t)) for s, t in pairs])


def attention_follows_links(run: Path, pairs) -> float:
    """The share of target words whose attention's argmax source word is a link of theirs."""
    translator = Translator.load(run / "last")
    found = align_pairs(translator, [s.split() for s, _ in pairs], [t.split() for _, t in pairs])
    return sum(len(a.links & reversed_links(s, t)) for a, (s, t) in zip(found, pairs)) / \
        sum(len(t.split()) for _, t in pairs)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_a_strong_weight_pulls_the_attention_onto_the_links(arch, reversed_corpus, grammar_data):
    """The same seeded model, 60 steps with λ = 2 and with λ = 0 (measured: 0.37 against
    0.11 for the RNN, 0.31 against 0.10 for the Transformer)."""
    folder, files = reversed_corpus
    model = {} if arch == "rnn" else TRANSFORMER
    share = {}
    for weight in (0.0, 2.0):
        cfg = guided_config(folder / f"{arch}-{weight}", files, weight, **model)
        cfg.data.prepared = str(folder / "prepared")  # the links are prepared either way
        train(cfg, show_progress=False)
        share[weight] = attention_follows_links(folder / f"{arch}-{weight}", grammar_data[0][:200])
    assert share[2.0] > 0.25 and share[2.0] > 2 * share[0.0], share
    rows = (folder / f"{arch}-2.0" / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,lr,train_loss,train_guided,tok_s,valid_loss,valid_bleu,elapsed_s"
    unguided = (folder / f"{arch}-0.0" / "log.csv").read_text().splitlines()
    assert unguided[0] == "step,epoch,lr,train_loss,tok_s,valid_loss,valid_bleu,elapsed_s"


def test_the_guided_loss_falls_and_resuming_gives_the_same_model(tmp_path, reversed_corpus):
    _, files = reversed_corpus
    straight = guided_config(tmp_path / "straight", files, 1.0, steps=30)
    straight.train.eval_every = 10
    train(straight, show_progress=False)
    stopped = guided_config(tmp_path / "stopped", files, 1.0, steps=20)
    stopped.train.eval_every = 10
    stopped.data.prepared = str(tmp_path / "straight" / "data")
    train(stopped, show_progress=False)
    state = json.loads((tmp_path / "stopped" / "last" / "trainer.json").read_text())
    assert state["step"] == 20 and state["guided_loss"] > 0
    stopped.train.max_steps = 30
    train(stopped, resume=True, show_progress=False)
    a, b = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("straight", "stopped"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    def log(run):  # every column but tokens/s and elapsed time
        lines = (tmp_path / run / "log.csv").read_text().splitlines()
        rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
        return [{k: v for k, v in row.items() if k not in ("tok_s", "elapsed_s")} for row in rows]
    assert log("straight") == log("stopped")
    guided = [float(row["train_guided"]) for row in log("straight")]
    assert len(guided) == 3 and guided[2] < guided[0]


# ---------------------------------------------------------------- errors

def test_a_weight_without_links_or_without_attention_is_a_config_error():
    with pytest.raises(RegardError, match=r"^x.yaml: 'train.guided_alignment_weight' is 0.5 but 'data.train_links' "
                                          r"is not set"):
        config_from_dict({"train": {"guided_alignment_weight": 0.5}}, source="x.yaml")
    with pytest.raises(RegardError, match=r"needs attention to guide \('model.attention' is none\)"):
        config_from_dict({"train": {"guided_alignment_weight": 0.5}, "data": {"train_links": "a.links"},
                          "model": {"attention": "none"}}, source="x.yaml")
    with pytest.raises(RegardError, match=r"'train.guided_alignment_weight' must be at least 0, got -1.0"):
        config_from_dict({"train": {"guided_alignment_weight": -1.0}})


@pytest.mark.parametrize("lines, message", [
    (lambda n: ["0-0"] * (n - 1), r"train.links:80: no line for training pair 80: the links file has only 79 lines"),
    (lambda n: ["0-0"] * (n + 2), r"train.links:81: more lines than the 80 training pairs of .*train.en"),
    (lambda n: ["0-0"] * 6 + ["0-0 1-40"] + ["0-0"] * (n - 7),
     r"train.links:7: link 1-40 names target word 40, but the target sentence has \d+ words"),
    (lambda n: ["0-0"] * 2 + ["0:1"] + ["0-0"] * (n - 3), r"train.links:3: malformed link '0:1'"),
])
def test_a_links_file_that_does_not_fit_the_pairs_is_an_error_naming_its_line(tmp_path, grammar_data, lines,
                                                                              message):
    pairs = grammar_data[0][:80]
    cfg = guided_config(tmp_path / "run", write_corpus(tmp_path, pairs, grammar_data[1][:5], lines(len(pairs))), 1.0)
    with pytest.raises(RegardError, match=message):
        prepare(cfg, FileSource.from_config(cfg), log=lambda m: None, processes=0)


def test_links_with_pairs_given_in_memory_are_an_error(tmp_path, grammar_data):
    cfg = tiny_config(tmp_path / "run")
    cfg.data.train_links = str(tmp_path / "train.links")
    with pytest.raises(RegardError, match="'data.train_links' gives the links of the training files, but the "
                                          "training pairs were given in memory"):
        train(cfg, data=(grammar_data[0][:50], grammar_data[1][:5]), show_progress=False)


@pytest.mark.parametrize("direction", ["en-fr", "fr-en"])
def test_the_guided_recipes_are_the_alignment_recipes_with_their_links(direction):
    from regard.config import differing_keys, load_config
    recipes = Path(__file__).parent.parent / "recipes"
    plain, guided = (load_config(recipes / f"alignment-{direction}{name}.yaml") for name in ("", "-guided"))
    assert differing_keys(plain.to_dict(), guided.to_dict()) == ["data.train_links", "train.guided_alignment_weight",
                                                                  "train.out_dir"]
    assert guided.data.train_links.endswith(f"runs/alignment-data/train.{direction}.links")
    assert guided.train.guided_alignment_weight > 0
