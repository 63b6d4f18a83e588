"""Training never saves a broken model: a NaN/inf loss or gradient stops it with the step named
(or is skipped and counted), weights that are not finite are never written, every rank decides
alike, a full disk keeps the previous checkpoints, and log.csv has no step twice after a resume."""

from __future__ import annotations

import csv
import errno
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import regard.checkpoint
from regard.errors import RegardError
from regard.training import distributed as dist
from regard.training import trainer
from regard.training.trainer import train
from tests.conftest import tiny_config
from tests.guard_ranks import nan_loss_at, nan_on_rank_1


def finite(folder) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(str(folder / "model.safetensors")).values())


def steps_in(folder) -> int:
    return json.loads((folder / "trainer.json").read_text())["step"]


def test_a_nan_loss_stops_training_naming_the_step_and_no_checkpoint_holds_it(tmp_path, grammar_data, monkeypatch):
    nan_loss_at(monkeypatch, {5})
    cfg = tiny_config(tmp_path / "run", steps=20)
    cfg.train.eval_every = 4
    with pytest.raises(RegardError) as err:
        train(cfg, data=grammar_data, show_progress=False)
    assert str(err.value).startswith("training stopped at step 5: the loss or a gradient is NaN or infinite; ")
    assert "train.skip_nonfinite" in str(err.value) and "\n" not in str(err.value)
    for name in ("best", "last"):
        assert finite(tmp_path / "run" / name)
    assert steps_in(tmp_path / "run" / "last") == 4


def test_skip_nonfinite_skips_and_counts_such_steps_then_stops_past_its_limit(tmp_path, grammar_data, monkeypatch):
    nan_loss_at(monkeypatch, {3, 4})
    cfg = tiny_config(tmp_path / "run", steps=8)
    cfg.train.skip_nonfinite = 2
    train(cfg, data=grammar_data, show_progress=False)
    state = json.loads((tmp_path / "run" / "last" / "trainer.json").read_text())
    assert (state["step"], state["skipped"]) == (8, 2) and finite(tmp_path / "run" / "last")
    nan_loss_at(monkeypatch, {3, 4, 6})
    cfg.train.out_dir = str(tmp_path / "again")
    with pytest.raises(RegardError, match=r"^training stopped at step 6: .* \(3 such steps, more than "
                                          r"train.skip_nonfinite: 2\)"):
        train(cfg, data=grammar_data, show_progress=False)


def test_weights_that_are_not_finite_are_never_validated_or_written(tmp_path, grammar_data, monkeypatch):
    real = trainer.train_step

    def poisoning_step(run, idx, step):
        result = real(run, idx, step)
        if step == 6:
            with torch.no_grad():
                run.model.decoder.output.weight[0, 0] = float("inf")
        return result

    monkeypatch.setattr(trainer, "train_step", poisoning_step)
    cfg = tiny_config(tmp_path / "run", steps=10)
    cfg.train.eval_every = 3
    with pytest.raises(RegardError, match=r"^training stopped at step 6: weight 'decoder.output.weight' holds NaN "
                                          r"or inf; .*best was not written"):
        train(cfg, data=grammar_data, show_progress=False)
    assert steps_in(tmp_path / "run" / "last") == 3 and finite(tmp_path / "run" / "best")


def test_every_rank_stops_at_the_step_where_one_rank_saw_a_nan_loss(tmp_path, grammar_data):
    """Rank 1 alone sees a NaN loss (its gradients stay finite): rank 0 must stop at the same step
    itself, with its own message, rather than step on and lose its partner."""
    cfg = tiny_config(tmp_path / "run", steps=20)
    cfg.train.workers = 2
    with pytest.raises(RegardError, match=r"^training stopped at step 3: the loss or a gradient is NaN"):
        with dist.LocalRanks(2, nan_on_rank_1, (cfg, grammar_data, 3)) as ranks:
            trainer.train_rank(cfg, ranks, False, grammar_data, False)


def test_a_full_disk_mid_checkpoint_keeps_the_previous_checkpoints_and_no_temporary(tmp_path, grammar_data,
                                                                                    monkeypatch):
    real, saves = regard.checkpoint.save_model, []

    def save_model(model, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 3:  # best/ and last/ at step 4 went through; last/ at step 8 meets a full disk
            open(path, "wb").write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(model, path, *args, **kwargs)

    monkeypatch.setattr(regard.checkpoint, "save_model", save_model)
    monkeypatch.setattr(trainer, "is_better", lambda score, best, by: best is None)  # best/ only at step 4
    cfg = tiny_config(tmp_path / "run", steps=12)
    cfg.train.eval_every = 4
    with pytest.raises(RegardError, match=r"^cannot write .*last: No space left on device \(.*last is unchanged\)$"):
        train(cfg, data=grammar_data, show_progress=False)
    run = tmp_path / "run"
    assert steps_in(run / "last") == 4 and finite(run / "best")
    assert sorted(p.name for p in run.iterdir()) == ["best", "data", "last", "log.csv"]


def log_steps(run) -> list[int]:
    with (run / "log.csv").open(encoding="utf-8") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_log_csv_has_no_step_twice_after_a_resume(tmp_path, grammar_data):
    """A crash after a row was logged but before last/ was saved: the resumed run logs that step
    again, once."""
    cfg = tiny_config(tmp_path / "run", steps=20)
    cfg.train.eval_every = 10
    train(cfg, data=grammar_data, show_progress=False)
    log = tmp_path / "run" / "log.csv"
    rows = log.read_text().splitlines()
    log.write_text("\n".join(rows + [rows[-1].replace("20,", "30,", 1)]) + "\n")  # step 30, never saved
    assert log_steps(tmp_path / "run") == [10, 20, 30]
    cfg.train.max_steps = 40
    train(cfg, resume=True, data=grammar_data, show_progress=False)
    assert log_steps(tmp_path / "run") == [10, 20, 30, 40]
    assert log.read_text().splitlines()[:3] == rows  # the rows before the resumed step are kept as they were
