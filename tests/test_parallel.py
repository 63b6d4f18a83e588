"""Data-parallel training: workers share the parameters and split each batch."""

import pytest
import torch
from safetensors.torch import load_file

from regard.data.batching import collate
from regard.errors import RegardError
from regard.model.seq2seq import Seq2Seq
from regard.training.parallel import Workers
from regard.training.trainer import build_tokenizers, encode_pairs, train, train_step
from tests.conftest import tiny_config


def test_workers_give_the_gradient_of_the_whole_batch(tmp_path, grammar_data):
    """Without dropout, 3 processes splitting a batch take the same step as one process."""
    cfg = tiny_config(tmp_path)
    cfg.model.dropout = 0.0
    toks = build_tokenizers(cfg, grammar_data[0])
    examples = encode_pairs(grammar_data[0], *toks, 100)
    idx = list(range(0, 70, 3))  # 24 sentences of mixed lengths
    models = []
    for n in (1, 3):
        torch.manual_seed(1)
        model = Seq2Seq(cfg.model, len(toks[0]), len(toks[1]))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        workers = Workers(model, cfg, examples, n) if n > 1 else None
        try:
            mine = workers.dispatch(idx, examples, step=1) if workers else idx
            assert len(mine) == (8 if workers else 24)
            loss = train_step(model, optimizer, collate([examples[i] for i in mine]), 1e-3, cfg, workers)
            grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        finally:
            if workers:
                workers.close()
        models.append((loss, grads, model.state_dict()))
    (loss1, grads1, state1), (loss3, grads3, state3) = models
    assert abs(loss1 - loss3) < 1e-5
    assert torch.allclose(grads1, grads3, atol=1e-6) and grads1.abs().sum() > 0
    assert all(torch.allclose(state1[k], state3[k], atol=1e-6) for k in state1)


def test_two_worker_runs_are_deterministic_and_learn(tmp_path, grammar_data):
    for name in ("a", "b"):
        cfg = tiny_config(tmp_path / name, steps=12)
        cfg.train.workers = 2
        train(cfg, data=grammar_data, show_progress=False)
    a, b = (load_file(str(tmp_path / n / "last" / "model.safetensors")) for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    first, last = (dict(zip(rows[0].split(","), r.split(","))) for r in (rows[1], rows[2]))
    assert float(last["valid_loss"]) < float(first["valid_loss"])


def test_a_worker_failure_is_a_clear_error_and_workers_stop(tmp_path, grammar_data):
    cfg = tiny_config(tmp_path)
    toks = build_tokenizers(cfg, grammar_data[0][:200])
    examples = encode_pairs(grammar_data[0][:200], *toks, 100)
    model = Seq2Seq(cfg.model, len(toks[0]), len(toks[1]))
    workers = Workers(model, cfg, examples, 2)
    try:
        workers.pipes[0].send(([10**6], 1, 10))  # a sentence index past the end of the data
        with pytest.raises(RegardError, match="(?s)a training worker failed:.*IndexError"):
            workers.collect(model)
    finally:
        workers.close()
    assert not any(p.is_alive() for p in workers.processes)
