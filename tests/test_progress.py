"""What training prints while it runs: plain lines off a terminal, a bar on one, nothing with --quiet."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from regard.training.progress import Reporter, clock
from tests.ranks import write_data

ROOT = Path(__file__).parent.parent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_plain_lines_at_the_interval():
    stream = io.StringIO()
    mode = Reporter.choose(True, 5, stream)
    report = Reporter(20, 0, 0.0, mode, 5, stream=stream)
    for step in range(1, 21):
        report.update(step, 2.5, 1234.0, 0, step * 1.0)
    report.write("step 20: valid loss 2.000, BLEU 1.00")
    report.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[1] for line in lines[:4]] == ["5/20", "10/20", "15/20", "20/20"]
    assert "loss 2.500" in lines[0] and "1,234 tok/s" in lines[0] and "elapsed 5s" in lines[0] and "left" in lines[0]
    assert lines[4] == "step 20: valid loss 2.000, BLEU 1.00"


def test_the_mode_follows_the_stream_and_the_options():
    assert Reporter.choose(True, 0, Terminal()) == "bar"
    assert Reporter.choose(True, 0, io.StringIO()) == "lines"
    assert Reporter.choose(True, 10, Terminal()) == "lines"  # --log-every asks for lines even on a terminal
    assert Reporter.choose(False, 0, Terminal()) == "quiet"
    assert (clock(5), clock(242), clock(3725)) == ("5s", "4m02s", "1h02m05s")


def test_the_time_left_is_the_sooner_of_the_steps_and_the_time_limit():
    report = Reporter(100, 0, 1.0, "quiet")
    report.started -= 10  # 10 s for 10 steps: 90 s to go by the steps, 30 s by the 1-minute limit
    assert abs(report.time_left(10, 30.0) - 30.0) < 1e-6
    report.max_minutes = 0
    assert 89 < report.time_left(10, 30.0) < 91


def run_train(tmp_path: Path, *flags: str) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_data(tmp_path, steps=30, eval_every=30)
    done = subprocess.run([sys.executable, "-m", "regard", "train", "--config", str(config), *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_regard_train_in_a_pipe_prints_lines_and_quiet_prints_none(tmp_path):
    err = run_train(tmp_path / "a", "--log-every", "10")
    steps = [line.split()[1] for line in err.splitlines() if line.startswith("step ") and "/" in line.split()[1]]
    assert steps == ["10/30", "20/30", "30/30"] and "\r" not in err
    assert "step 30: valid loss" in err and "done: best model in" in err
    quiet = run_train(tmp_path / "b", "--quiet")
    assert not any(line.startswith("step ") and "/" in line.split()[1] for line in quiet.splitlines())
    assert "step 30: valid loss" in quiet
