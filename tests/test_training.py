"""Training: checkpoints, exact resume, determinism, interruption, and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from regard.data.batching import Batch
from regard.errors import RegardError
from regard.checkpoint import load_model_dir, resolve_model_dir, save_model_dir
from regard.files import replace_folder
from regard.data.prepare import spread
from regard.training.trainer import lr_at, train
from regard.translator import Translator
from tests.conftest import random_batch, tiny_config

ROOT = Path(__file__).parent.parent


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_a_run_writes_best_last_and_a_log_and_learns(trained_run):
    for name in ("best", "last"):
        assert {"config.json", "model.safetensors", "src.spm", "tgt.spm"} <= {p.name for p in (trained_run / name).iterdir()}
    assert (trained_run / "last" / "trainer.json").is_file()
    rows = (trained_run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,train_loss") and len(rows) == 3
    first, last = (dict(zip(rows[0].split(","), r.split(","))) for r in (rows[1], rows[2]))
    # the training loss falls steadily; the validation loss is still on its plateau near 4.0 at
    # these 60 steps (which of the two evaluations is lower depends on the batch order)
    assert float(last["train_loss"]) < float(first["train_loss"]) - 0.1


def test_save_then_load_gives_identical_outputs(tmp_path, trained_run):
    model, cfg, src_tok, tgt_tok = load_model_dir(trained_run / "best")
    save_model_dir(tmp_path, model, cfg, src_tok, tgt_tok)
    again, *_ = load_model_dir(tmp_path)
    src, lengths = random_batch(vocab=len(src_tok))
    tgt = torch.randint(4, len(tgt_tok), (3, 5))
    b = Batch(src, lengths, tgt, tgt)
    assert torch.equal(model(b)[0], again(b)[0])
    one = Translator.load(trained_run / "best").translate(["the black cat ate the mouse"], beam=3)[0]
    two = Translator.load(tmp_path).translate(["the black cat ate the mouse"], beam=3)[0]
    assert (one.text, one.score, one.attention) == (two.text, two.score, two.attention)


def test_same_seed_same_model(tmp_path, grammar_data):
    for name in ("a", "b"):
        train(tiny_config(tmp_path / name, steps=8), data=grammar_data, show_progress=False)
    a, b = weights(tmp_path / "a" / "last"), weights(tmp_path / "b" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_gives_the_same_result_as_not_stopping(tmp_path, grammar_data):
    """Stop at step 30 (several epochs in), resume to 45: identical to 45 steps straight."""
    grammar_data = (grammar_data[0][:300], grammar_data[1])
    straight = tiny_config(tmp_path / "straight", steps=45)
    straight.train.eval_every = 15
    train(straight, data=grammar_data, show_progress=False)
    stopped = tiny_config(tmp_path / "stopped", steps=30)
    stopped.train.eval_every = 15
    train(stopped, data=grammar_data, show_progress=False)
    state = json.loads((tmp_path / "stopped" / "last" / "trainer.json").read_text())
    assert state["step"] == 30 and state["epoch"] >= 1  # crossed an epoch boundary
    stopped.train.max_steps = 45
    train(stopped, resume=True, data=grammar_data, show_progress=False)
    a, b = weights(tmp_path / "straight" / "last"), weights(tmp_path / "stopped" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)
    def log(run):  # every column but tokens/s and elapsed time
        rows = (tmp_path / run / "log.csv").read_text().splitlines()
        return [r.split(",")[:4] + r.split(",")[5:7] for r in rows]

    assert log("straight") == log("stopped")


def test_existing_run_is_never_overwritten_without_resume(tmp_path, grammar_data, trained_run):
    before = weights(trained_run / "last")
    cfg = tiny_config(trained_run)
    with pytest.raises(RegardError, match="already holds a training run"):
        train(cfg, data=grammar_data, show_progress=False)
    after = weights(trained_run / "last")
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(RegardError, match="nothing to resume"):
        train(tiny_config(tmp_path / "fresh"), resume=True, data=grammar_data, show_progress=False)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "last"
    replace_folder(target, lambda d: (d / "model.safetensors").write_text("v1"))

    def crash(folder):
        (folder / "model.safetensors").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        replace_folder(target, crash)
    assert (target / "model.safetensors").read_text() == "v1"
    replace_folder(target, lambda d: (d / "model.safetensors").write_text("v2"))
    assert (target / "model.safetensors").read_text() == "v2"
    assert not (tmp_path / ".last.tmp").exists() and not (tmp_path / ".last.old").exists()


def test_a_crash_between_renames_is_recovered(tmp_path, trained_run):
    run = tmp_path / "run"
    (run / ".last.old").parent.mkdir()
    import shutil
    shutil.copytree(trained_run / "last", run / ".last.old")  # 'last' moved aside, new one never arrived
    assert resolve_model_dir(run / "last") == run / ".last.old"


def test_resume_after_a_crash_between_renames_uses_the_complete_copy(tmp_path, trained_run, grammar_data):
    """Killed after 'last' became '.last.old' and before '.last.tmp' became 'last': --resume
    puts the complete copy back (the half-written one is never trusted) and continues."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "last").rename(run / ".last.old")
    (run / ".last.tmp").mkdir()
    (run / ".last.tmp" / "model.safetensors").write_bytes(b"half")
    cfg = tiny_config(run, steps=64)
    cfg.train.eval_every = 30
    train(cfg, resume=True, data=grammar_data, show_progress=False)
    assert json.loads((run / "last" / "trainer.json").read_text())["step"] == 64
    assert not (run / ".last.old").exists() and not (run / ".last.tmp").exists()


def test_corrupt_checkpoints_are_clear_errors(tmp_path, trained_run):
    import shutil
    for name, damage, message in [
        ("weights", lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "corrupt checkpoint"),
        ("truncated", lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:500]),
         "corrupt checkpoint"),
        ("config", lambda d: (d / "config.json").write_text("{not json"), "corrupt checkpoint file"),
        ("spm", lambda d: (d / "tgt.spm").write_bytes(b"junk"), "corrupt SentencePiece model"),
        ("missing", lambda d: (d / "model.safetensors").unlink(), "checkpoint file missing"),
    ]:
        folder = tmp_path / name
        shutil.copytree(trained_run / "best", folder)
        damage(folder)
        with pytest.raises(RegardError, match=message):
            Translator.load(folder)
    with pytest.raises(RegardError, match="model folder not found"):
        Translator.load(tmp_path / "nowhere")


def test_learning_rate_schedules():
    cfg = tiny_config(Path("x"))
    cfg.train.lr, cfg.train.warmup_steps, cfg.train.max_steps = 1.0, 10, 110
    assert lr_at(5, cfg) == pytest.approx(0.5)
    assert lr_at(50, cfg) == 1.0
    cfg.train.schedule = "inverse_sqrt"
    assert lr_at(40, cfg) == pytest.approx(0.5)
    cfg.train.schedule = "linear"
    assert lr_at(60, cfg) == pytest.approx(0.5) and lr_at(110, cfg) == pytest.approx(0.0)


def write_corpus(folder: Path, pairs, name: str):
    (folder / f"{name}.en").write_text("".join(s + "\n" for s, _ in pairs))
    (folder / f"{name}.fr").write_text("".join(t + "\n" for _, t in pairs))


def test_validation_bleu_samples_the_whole_file_not_its_head():
    by_length = [("w " * n, str(n)) for n in range(1, 1001)]  # sorted by length, like Tatoeba's split
    sample = spread(by_length, 10)
    assert len(sample) == 10 and len(set(sample)) == 10
    assert sample[0] == by_length[0] and sample[-1][1] == "901"
    assert spread(by_length[:7], 10) == by_length[:7]


def test_sigterm_saves_then_resume_finishes(tmp_path, grammar_data):
    """A real `regard train` process: SIGTERM saves last/ and exits 130; --resume completes."""
    write_corpus(tmp_path, grammar_data[0], "train")
    write_corpus(tmp_path, grammar_data[1], "valid")
    cfg = tiny_config(tmp_path / "run", steps=150).to_dict()
    cfg["train"].update(eval_every=1000)
    cfg["data"].update(train_src="train.en", train_tgt="train.fr", valid_src="valid.en", valid_tgt="valid.fr")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    command = [sys.executable, "-m", "regard", "train", "--config", str(tmp_path / "c.yaml")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "run" / "log.csv").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped at step" in err and "Traceback" not in err
    stopped_at = json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())["step"]
    assert 0 < stopped_at < 150
    done = subprocess.run(command + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())["step"] == 150


def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path, grammar_data):
    """With a learning rate too small to change any translation, BLEU never improves."""
    cfg = tiny_config(tmp_path / "run", steps=100)
    cfg.train.lr, cfg.train.eval_every, cfg.train.patience = 1e-12, 4, 2
    cfg.data.valid_max_sentences = 10
    train(cfg, data=(grammar_data[0][:300], grammar_data[1]), show_progress=False)
    state = json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())
    assert state["step"] == 12 and state["bad_evals"] == 2  # best at 4, no better at 8 and 12


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_low_precision_translation_converts_the_weights_and_agrees_with_fp32(trained_run, grammar_data,
                                                                             precision):
    fp32 = Translator.load(trained_run)
    low = Translator.load(trained_run, precision=precision)
    if precision == "bf16":
        assert all(p.dtype == torch.bfloat16 for p in low.model.parameters())
    else:  # every linear and recurrent layer is a dynamically quantised one
        modules = list(low.model.modules())
        assert not [m for m in modules if type(m) in (torch.nn.Linear, torch.nn.GRU, torch.nn.GRUCell)]
        assert [m for m in modules if "quantized" in type(m).__module__]
    sources = [s for s, _ in grammar_data[1][:20]]
    a, b = fp32.translate(sources, beam=3), low.translate(sources, beam=3)
    assert sum(x.text == y.text for x, y in zip(a, b)) >= 15  # rounding may flip a close call
    for t in b:
        assert all(abs(sum(row) - 1) < 2e-2 for row in t.attention)


CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


@pytest.mark.parametrize("preset, kernel_cache, expected", [(None, 16, "16"), ("256", 16, "256"), (None, 0, None)])
def test_training_bounds_the_onednn_kernel_caches_unless_told_otherwise(tmp_path, grammar_data, monkeypatch,
                                                                      preset, kernel_cache, expected):
    """bf16 memory grows with every new batch shape unless both kernel caches are bounded
    (docs/PERFORMANCE.md, "Memory"); a size set by the user wins, and 0 leaves torch's default."""
    for name in CACHES:
        monkeypatch.delenv(name, raising=False)
        if preset:
            monkeypatch.setenv(name, preset)
    cfg = tiny_config(tmp_path / "run", steps=2)
    cfg.train.kernel_cache = kernel_cache
    train(cfg, data=grammar_data, show_progress=False)
    assert [os.environ.get(name) for name in CACHES] == [expected, expected]


def test_a_run_saved_before_the_device_and_precision_keys_resumes(tmp_path, trained_run, grammar_data):
    """An older last/config.json (train.bf16, none of the newer keys) is read with its defaults
    filled in: resuming it is not refused for keys it never had."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    meta = json.loads((run / "last" / "config.json").read_text())
    for key in ("device", "precision", "grad_compression", "save_every", "log_every"):
        meta["config"]["train"].pop(key)
    meta["config"]["train"]["bf16"] = False
    (run / "last" / "config.json").write_text(json.dumps(meta))
    cfg = tiny_config(run, steps=62)
    cfg.train.eval_every = 30
    train(cfg, resume=True, data=grammar_data, show_progress=False)
    assert json.loads((run / "last" / "trainer.json").read_text())["step"] == 62
