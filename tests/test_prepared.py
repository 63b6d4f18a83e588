"""Training data prepared once into memory-mapped shards: the same training as before, and
stale, corrupt or half-written prepared data never used."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regard.training import trainer
from regard.training.trainer import train
from tests.conftest import tiny_config

GOLDEN = Path(__file__).parent / "golden" / "prepared.json"
WRITE_GOLDEN = os.environ.get("REGARD_WRITE_GOLDEN") == "1"  # re-record (only when the training itself changes)


def golden_corpus(folder: Path, grammar_data) -> dict[str, str]:
    """Files with what cleaning and the length filter drop: duplicates, an empty side, long pairs."""
    train_pairs = grammar_data[0][:260]
    dirty = train_pairs[:200] + train_pairs[:15] + [("", "rien"), ("a b c", "")] + train_pairs[200:]
    for name, pairs in (("train", dirty), ("valid", grammar_data[1][:20])):
        for side, lang in ((0, "en"), (1, "fr")):
            (folder / f"{name}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
    return {"train_src": str(folder / "train.en"), "train_tgt": str(folder / "train.fr"),
            "valid_src": str(folder / "valid.en"), "valid_tgt": str(folder / "valid.fr")}


def record_training(monkeypatch, cfg, data=None) -> dict:
    """Train, recording every step's global batch, the tensors this process computed on, the loss,
    and the final weights."""
    steps: list[dict] = []
    step_fn, forward = trainer.train_step, trainer.LossOf.forward

    def recording_step(run, idx, step):
        steps.append({"batch": [int(i) for i in idx]})
        loss, total = step_fn(run, idx, step)
        steps[-1].update(loss=loss, tokens=total)
        return loss, total

    def recording_forward(self, batch, scale, grad_scale):
        digest = hashlib.sha256()
        for t in (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out):
            digest.update(str(tuple(t.shape)).encode() + t.to(torch.int64).numpy().tobytes())
        steps[-1].update(tensors=digest.hexdigest()[:16], scale=scale)
        return forward(self, batch, scale, grad_scale)

    monkeypatch.setattr(trainer, "train_step", recording_step)
    monkeypatch.setattr(trainer.LossOf, "forward", recording_forward)
    out = train(cfg, data=data, show_progress=False)
    weights = load_file(str(out / "last" / "model.safetensors"))
    return {"steps": steps, "weights": {k: [float(v.double().sum()), float(v.double().square().sum())]
                                        for k, v in sorted(weights.items())}}


def test_prepared_data_trains_exactly_as_the_list_of_ids_path_did(tmp_path, monkeypatch, grammar_data):
    """Golden: the batches, the tensors of every step, the losses and the final weights that the
    training path holding the corpus as Python lists gave (recorded before it was replaced), for a
    corpus read from files (cleaned, length-filtered) and one given in memory."""
    runs = {}
    for name in ("files", "memory"):
        cfg = tiny_config(tmp_path / name, steps=40)
        cfg.train.eval_every, cfg.train.batch_tokens, cfg.data.max_len = 20, 500, 24
        if name == "files":
            for key, value in golden_corpus(tmp_path, grammar_data).items():
                setattr(cfg.data, key, value)
            runs[name] = record_training(monkeypatch, cfg)
        else:
            runs[name] = record_training(monkeypatch, cfg, data=(grammar_data[0][:250], grammar_data[1][:20]))
        monkeypatch.undo()
    if WRITE_GOLDEN:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(runs, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    for name, run in runs.items():
        want = golden[name]
        assert len(run["steps"]) == len(want["steps"]) == 40
        for step, (got, expected) in enumerate(zip(run["steps"], want["steps"]), start=1):
            assert got["batch"] == expected["batch"], f"{name}: batch of step {step}"
            assert (got["tensors"], got["tokens"], got["scale"]) == (expected["tensors"], expected["tokens"],
                                                                     expected["scale"]), f"{name}: step {step}"
            assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6), f"{name}: loss of step {step}"
        assert run["weights"].keys() == want["weights"].keys()
        for key, stats in run["weights"].items():
            assert stats == pytest.approx(want["weights"][key], rel=1e-6), f"{name}: weights {key}"
