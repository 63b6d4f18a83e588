"""Step checkpoints (train.keep_checkpoints) and their average (regard average)."""

import pytest
import torch

from regard.averaging import average_run, step_checkpoints, step_folder
from regard.checkpoint import load_model_dir
from regard.errors import RegardError
from tests.conftest import random_model, random_transformer, save_random, tiny_config


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_the_average_of_two_checkpoints_is_their_parameter_mean(tmp_path, tiny_tokenizer, arch):
    V = len(tiny_tokenizer)
    make = (lambda seed: random_model(vocab=V, seed=seed)) if arch == "rnn" else \
        (lambda seed: random_transformer(vocab=V, seed=seed, tied_embeddings=True))
    models = {10: make(1), 20: make(2), 5: make(3)}
    for step, model in models.items():
        save_random(step_folder(tmp_path / "run", step), model, tiny_tokenizer)
    assert [p.name for p in step_checkpoints(tmp_path / "run")] == ["step-000005", "step-000010", "step-000020"]
    out, chosen = average_run(tmp_path / "run", tmp_path / "avg", last=2)
    assert [p.name for p in chosen] == ["step-000010", "step-000020"]
    averaged, cfg, _, _ = load_model_dir(out)
    a, b = models[10].state_dict(), models[20].state_dict()
    for name, value in averaged.state_dict().items():
        assert torch.allclose(value, (a[name] + b[name]) / 2, atol=1e-7), name
    assert cfg.model.arch == arch
    out, chosen = average_run(tmp_path / "run" / "checkpoints", tmp_path / "avg")  # all three, replacing avg/
    assert len(chosen) == 3
    assert torch.allclose(load_model_dir(out)[0].output.bias, sum(m.output.bias for m in models.values()) / 3)


def test_averaging_refuses_what_it_cannot_average(tmp_path, tiny_tokenizer):
    V = len(tiny_tokenizer)
    with pytest.raises(RegardError, match="has no step checkpoints"):
        average_run(tmp_path, tmp_path / "avg")
    save_random(step_folder(tmp_path / "run", 1), random_model(vocab=V), tiny_tokenizer)
    save_random(step_folder(tmp_path / "run", 2), random_transformer(vocab=V), tiny_tokenizer)
    with pytest.raises(RegardError, match="their model configs differ"):
        average_run(tmp_path / "run", tmp_path / "avg")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(RegardError, match="is not a model folder"):
        average_run(tmp_path / "run", tmp_path / "precious", last=1)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def test_training_keeps_the_last_n_step_checkpoints_and_regard_average_uses_them(tmp_path, grammar_data, capsys):
    from regard.cli import main
    from regard.training.trainer import train
    cfg = tiny_config(tmp_path / "run", steps=6)
    cfg.train.eval_every, cfg.train.keep_checkpoints = 2, 2
    cfg.data.valid_max_sentences = 4
    train(cfg, data=grammar_data, show_progress=False)
    assert [p.name for p in step_checkpoints(tmp_path / "run")] == ["step-000004", "step-000006"]
    last, _, _, _ = load_model_dir(tmp_path / "run" / "checkpoints" / "step-000006")
    final, _, _, _ = load_model_dir(tmp_path / "run" / "last")
    assert all(torch.equal(x, y) for x, y in zip(last.parameters(), final.parameters()))
    assert main(["average", "--model", str(tmp_path / "run"), "-o", str(tmp_path / "avg")]) == 0
    assert "the average of 2 checkpoints (step-000004 … step-000006)" in capsys.readouterr().err
    first, _, _, _ = load_model_dir(tmp_path / "run" / "checkpoints" / "step-000004")
    averaged, _, _, _ = load_model_dir(tmp_path / "avg")  # a normal model folder, checksums and all
    for a, x, y in zip(averaged.parameters(), first.parameters(), last.parameters()):
        assert torch.allclose(a, (x + y) / 2, atol=1e-6)
    from regard.translator import Translator
    assert Translator.load(tmp_path / "avg").translate(["the black cat"])[0].source == "the black cat"
