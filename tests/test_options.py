"""Training options, each shown to do what it says: BPE subwords, keep_best_by: loss,
the max_epochs end and TensorBoard logging."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import sacrebleu

from regard.checkpoint import load_model_dir
from regard.data.batching import batch_indices
from regard.data.tokenizer import Tokenizer
from regard.errors import RegardError
from regard.training.logger import ScalarLog
from regard.training.trainer import encode_pairs, evaluate, train
from regard.translator import Translator
from tests.conftest import tiny_config


def log_rows(run: Path) -> list[dict[str, float]]:
    with (run / "log.csv").open(encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def valid_loss_and_bleu(folder: Path, valid: list[tuple[str, str]]) -> tuple[float, float]:
    """What training's validation measures for the model saved in ``folder``."""
    model, cfg, src_tok, tgt_tok = load_model_dir(folder)
    return evaluate(model, cfg, src_tok, tgt_tok, valid, encode_pairs(valid, src_tok, tgt_tok, 10**9))


def test_bpe_subwords_train_and_translate(tmp_path, grammar_data):
    cfg = tiny_config(tmp_path / "run")
    cfg.tokenizer.type = "bpe"
    cfg.train.lr = 2e-2  # French-looking output within the 60 steps
    train(cfg, data=grammar_data, show_progress=False)
    best = tmp_path / "run" / "best"
    assert json.loads((best / "config.json").read_text())["config"]["tokenizer"]["type"] == "bpe"
    english = [en for en, _ in grammar_data[0]]
    bpe, unigram = (Tokenizer.train(english, 120, kind).proto for kind in ("bpe", "unigram"))
    assert bpe != unigram
    assert (best / "src.spm").read_bytes() == bpe  # the saved subword model is the BPE one
    # the saved model translates: greedy search over the validation set gives the best logged BLEU
    valid = grammar_data[1]
    hyps = Translator.load(best).translate([en for en, _ in valid], beam=1)
    assert all(h.text for h in hyps)
    bleu = sacrebleu.corpus_bleu([h.text for h in hyps], [[fr for _, fr in valid]]).score
    best_logged = max(row["valid_bleu"] for row in log_rows(tmp_path / "run"))
    assert bleu > 0 and bleu == pytest.approx(best_logged, abs=1e-4)


def test_keep_best_by_loss_keeps_the_lowest_validation_loss(tmp_path, grammar_data):
    """A high learning rate makes the validation loss go up and down: its lowest point is
    neither the last evaluation nor the one with the highest BLEU."""
    valid = grammar_data[1][:20]
    for seed in range(3, 13):  # the first seed whose run has such a lowest point (the trajectory
        run = tmp_path / f"run{seed}"  # depends on the CPU's kernels, so it is searched for, not fixed)
        cfg = tiny_config(run, steps=30)
        cfg.train.eval_every, cfg.train.lr, cfg.train.keep_best_by, cfg.train.seed = 3, 0.1, "loss", seed
        train(cfg, data=(grammar_data[0], valid), show_progress=False)
        rows = log_rows(run)
        lowest = min(rows, key=lambda row: row["valid_loss"])
        if lowest is not rows[-1] and lowest is not max(rows, key=lambda row: row["valid_bleu"]):
            break
    else:
        pytest.fail("no seed from 3 to 12 gave a run whose lowest validation loss is neither last nor best BLEU")
    loss, bleu = valid_loss_and_bleu(run / "best", valid)
    assert loss == pytest.approx(lowest["valid_loss"], rel=1e-5)
    assert bleu == pytest.approx(lowest["valid_bleu"], abs=1e-4)
    assert loss < valid_loss_and_bleu(run / "last", valid)[0]


def test_max_epochs_stops_after_exactly_that_many_epochs_validates_and_saves(tmp_path, grammar_data):
    cfg = tiny_config(tmp_path / "run", steps=10**6)
    cfg.train.max_epochs, cfg.train.eval_every = 2, 10**6  # no evaluation but the final one
    train_pairs = grammar_data[0][:200]
    train(cfg, data=(train_pairs, grammar_data[1]), show_progress=False)
    _, _, src_tok, tgt_tok = load_model_dir(tmp_path / "run" / "last")
    examples = encode_pairs(train_pairs, src_tok, tgt_tok, cfg.data.max_len)
    steps = sum(len(batch_indices(examples, cfg.train.batch_tokens, cfg.train.seed, epoch)) for epoch in (0, 1))
    state = json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (steps, 2, 0)
    [row] = log_rows(tmp_path / "run")  # validated once, at the end
    assert (row["step"], row["epoch"]) == (steps, 2)
    loss, _ = valid_loss_and_bleu(tmp_path / "run" / "last", grammar_data[1])
    assert loss == pytest.approx(row["valid_loss"], rel=1e-5)  # last/ holds the final weights
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def event_accumulator():
    """tensorboard's EventAccumulator; a skip outside CI when tensorboard is not installed."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("tensorboard is not installed (pip install -r requirements.txt)")
    return EventAccumulator


def test_tensorboard_log_holds_every_scalar_at_every_evaluation(tmp_path, grammar_data):
    EventAccumulator = event_accumulator()
    cfg = tiny_config(tmp_path / "run", steps=4)
    cfg.train.eval_every, cfg.train.log = 2, "tensorboard"
    train(cfg, data=grammar_data, show_progress=False)
    assert not (tmp_path / "run" / "log.csv").exists()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    names = ["epoch", "lr", "train_loss", "tok_s", "valid_loss", "valid_bleu", "elapsed_s"]
    assert sorted(events.Tags()["scalars"]) == sorted(names)
    for name in names:
        assert [e.step for e in events.Scalars(name)] == [2, 4]
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([cfg.train.lr] * 2)
    loss, _ = valid_loss_and_bleu(tmp_path / "run" / "last", grammar_data[1])
    assert events.Scalars("valid_loss")[-1].value == pytest.approx(loss, rel=1e-5)


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(RegardError, match=r"train\.log: tensorboard needs .*regard\[tensorboard\].*log: csv"):
        ScalarLog(tmp_path, "tensorboard")
