"""Training with several processes (torch.distributed, gloo on CPU): the same model as one
process, checkpoints written once, exact resumption, failures that end every rank promptly,
and torchrun restarting a job whose rank was killed."""

from __future__ import annotations

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

from regard.errors import RegardError
from regard.training import distributed as dist
from regard.training.trainer import train
from regard.translator import Translator
from tests.conftest import tiny_config
from tests.ranks import failing_rank, write_data

ROOT = Path(__file__).parent.parent


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def log_rows(run: Path) -> list[list[str]]:
    return [r.split(",") for r in (run / "log.csv").read_text().splitlines()[1:]]


def test_two_processes_learn_what_one_does_and_write_once(tmp_path, grammar_data):
    """Without dropout, 2 ranks splitting every batch end where 1 process does (up to float
    order); rank 0 alone writes: one log row per evaluation, one best/ and last/."""
    runs = {}
    for n in (1, 2):
        cfg = tiny_config(tmp_path / str(n), steps=10)
        cfg.model.dropout, cfg.train.workers, cfg.train.eval_every = 0.0, n, 5
        runs[n] = train(cfg, data=grammar_data, show_progress=False)
    one, two = weights(runs[1] / "last"), weights(runs[2] / "last")
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4
    assert not all(torch.equal(one[k], two[k]) for k in one)  # really two processes: other float order
    for n in (1, 2):
        assert [r[0] for r in log_rows(runs[n])] == ["5", "10"]
        assert sorted(p.name for p in runs[n].iterdir()) == ["best", "data", "last", "log.csv"]
    valid_loss = {n: [float(r[5]) for r in log_rows(runs[n])] for n in runs}
    assert valid_loss[1] == pytest.approx(valid_loss[2], rel=1e-3)


def test_two_process_runs_are_deterministic_and_resume_exactly(tmp_path, grammar_data):
    """With dropout: the same seed gives the same weights, and stopping at step 12 then
    resuming to 24 gives the weights of 24 steps straight."""
    data = (grammar_data[0][:300], grammar_data[1])

    def run(name: str, steps: int, resume: bool = False) -> Path:
        cfg = tiny_config(tmp_path / name, steps=steps)
        cfg.train.workers, cfg.train.eval_every = 2, 12
        return train(cfg, resume=resume, data=data, show_progress=False)

    straight, again = run("straight", 24), run("again", 24)
    run("stopped", 12)
    resumed = run("stopped", 24, resume=True)
    a, b, c = weights(straight / "last"), weights(again / "last"), weights(resumed / "last")
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    assert [r[:4] for r in log_rows(straight)] == [r[:4] for r in log_rows(resumed)]


def test_a_failing_rank_ends_the_job_with_its_own_message(tmp_path, grammar_data):
    """Rank 1 raises at step 3: rank 0, waiting for it, stops at once and reports rank 1's error."""
    cfg = tiny_config(tmp_path / "run", steps=40)
    cfg.train.workers = 2
    tic = time.time()
    with pytest.raises(RegardError, match=r"^\[rank 1\] boom at step 3$"):
        with dist.LocalRanks(2, failing_rank, (cfg, grammar_data, 3)) as ranks:
            from regard.training.trainer import train_rank
            train_rank(cfg, ranks, False, grammar_data, False)
    assert time.time() - tic < 60


def test_the_command_line_stops_every_rank_on_sigterm(tmp_path):
    """SIGTERM to rank 0 of `regard train --workers 2`: last/ saved, exit 130, no process left."""
    config = write_data(tmp_path, steps=100000, eval_every=100000)
    proc = subprocess.Popen([sys.executable, "-m", "regard", "train", "--config", str(config),
                             "--set", "train.workers=2"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = tmp_path / "run"
    deadline = time.time() + 90
    while not (log / "log.csv").exists() and time.time() < deadline:  # written when training starts
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped at step" in err and "continue with --resume" in err
    assert yaml.safe_load((log / "last" / "trainer.json").read_text())["step"] >= 1
    assert Translator.load(log / "last").translate(["the cat"])[0].score < 0  # a complete model
    assert no_process_left(proc.pid)


def no_process_left(group: int, seconds: float = 10.0) -> bool:
    """True once no process of session ``group`` is left (multiprocessing's helper takes a moment)."""
    deadline = time.time() + seconds
    while subprocess.run(["pgrep", "-g", str(group)], capture_output=True).returncode == 0:
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def descendants(parent: int) -> list[int]:
    """PIDs of every process below ``parent`` (torchrun gives its workers sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [parent]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def rank_pids(parent: int, rank: int) -> list[int]:
    """PIDs of the first attempt's processes below ``parent`` whose environment says RANK=rank."""
    found = []
    for pid in descendants(parent):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RESTART_COUNT=0" in env:
            found.append(pid)
    return found


def test_torchrun_restarts_a_job_whose_rank_was_killed_and_it_resumes(tmp_path):
    config = write_data(tmp_path, steps=200, eval_every=100, save_every=10)
    out = tmp_path / "run"
    proc = subprocess.Popen(torchrun("--max-restarts=1", "-m", "regard", "train", "--config", str(config)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "last" / "trainer.json").is_file():
        time.sleep(0.1)
    victims = rank_pids(proc.pid, 1)
    assert victims, "no rank 1 process found"
    os.kill(victims[0], signal.SIGKILL)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    assert "resuming" in output and "step 200: valid loss" in output
    state = yaml.safe_load((out / "last" / "trainer.json").read_text())
    assert state["step"] == 200
    for name in ("best", "last"):
        assert Translator.load(out / name).translate(["the black cat"])[0].text


def test_under_torchrun_a_failing_rank_stops_the_job(tmp_path):
    """Every process exits, non-zero, in bounded time; the failing rank's line names it."""
    config = write_data(tmp_path, steps=100000, eval_every=100000)
    tic = time.time()
    done = subprocess.run(torchrun(str(ROOT / "tests" / "ranks.py"), str(config)), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and time.time() - tic < 120
    assert "regard: error: [rank 1] boom at step 3" in done.stderr + done.stdout


def test_a_restarted_job_with_another_config_names_the_keys(tmp_path, grammar_data, monkeypatch):
    cfg = tiny_config(tmp_path / "run", steps=6)
    train(cfg, data=grammar_data, show_progress=False)
    cfg.model.dropout, cfg.train.lr, cfg.train.max_steps = 0.3, 0.01, 12  # max_steps may change, not the others
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # as torchrun sets it in a restarted job
    with pytest.raises(RegardError, match=r"differs from the run being resumed .* in: model\.dropout, train\.lr;"):
        train(cfg, data=grammar_data, show_progress=False)
    cfg.model.dropout, cfg.train.lr = 0.1, 3e-3
    train(cfg, data=grammar_data, show_progress=False)  # resumed without --resume
    assert yaml.safe_load((tmp_path / "run" / "last" / "trainer.json").read_text())["step"] == 12


def test_device_auto_is_the_cpu_here_and_cuda_is_a_clear_error(tmp_path, grammar_data):
    from regard.device import resolve_device
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    cfg = tiny_config(tmp_path / "run", steps=2)
    cfg.train.device = "cuda"
    with pytest.raises(RegardError, match="train.device 'cuda': CUDA is not available"):
        train(cfg, data=grammar_data, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_gloo_all_reduce_with_fp16_compression_learns_the_same_and_bf16_is_for_nccl(tmp_path, grammar_data):
    """Ranks on one machine average through shared memory; with compression they use gloo's
    all-reduce of fp16 gradients instead: the same model up to fp16 rounding."""
    runs = {}
    for name, compression in (("shm", "none"), ("fp16", "fp16")):
        cfg = tiny_config(tmp_path / name, steps=6)
        cfg.model.dropout, cfg.train.workers, cfg.train.grad_compression = 0.0, 2, compression
        runs[name] = weights(train(cfg, data=grammar_data, show_progress=False) / "last")
    diffs = torch.cat([(runs["shm"][k] - runs["fp16"][k]).abs().flatten() for k in runs["shm"]])
    assert diffs.isfinite().all() and float(diffs.mean()) < 1e-3 and float(diffs.max()) < 0.05  # Adam: ±lr a step
    cfg = tiny_config(tmp_path / "bf16", steps=2)
    cfg.train.workers, cfg.train.grad_compression = 2, "bf16"
    with pytest.raises(RegardError, match="grad_compression: bf16 needs NCCL"):
        train(cfg, data=grammar_data, show_progress=False)
