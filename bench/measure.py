"""Running one measured phase in its own process, and reading the numbers back from logs.

Every phase (a training, a translation, the matmul ceiling) is a subprocess, Regard's
included, so each has its own peak resident memory: ``os.wait4`` returns the rusage of
exactly that child (``ru_maxrss``, KiB on Linux). Every subprocess gets the same thread
environment: 2 OpenMP/MKL threads and ``OMP_WAIT_POLICY=PASSIVE`` (spinning OpenMP
threads make torch many times slower on a shared CPU). None inherits glibc allocator settings
(``MALLOC_*``) from the benchmark's own process: each system runs with glibc's defaults, or
with what it sets itself (Regard: :func:`regard.runtime.reuse_freed_memory`).

Training speed is computed the same way for all: the real target tokens (with
``</s>``, without padding or ``<s>``) of the steps after the warm-up, divided by the
wall time from the log point at the end of the warm-up to the last one. The peers log
every 10 steps with a millisecond timestamp; Regard's step times are recorded by
``bench.regard_run`` at the same points.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

THREAD_ENV = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE",
              "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


@dataclass
class Finished:
    """A finished subprocess: exit code, wall time, its own peak RSS and where its log is."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    log: Path
    interrupted: bool = False

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, stdin: Path | None = None,
        stdout: Path | None = None, deadline_s: float | None = None, cwd: Path | None = None) -> Finished:
    """Run ``cmd`` to the end (SIGINT at ``deadline_s``, like Ctrl-C); stderr (and stdout unless given) to ``log``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    full_env = {**inherited, **THREAD_ENV, **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err, open(stdin or os.devnull, "rb") as inp, \
            (open(stdout, "w") if stdout else open(os.devnull, "w")) as out:
        start = time.perf_counter()
        # a shell's background job ignores SIGINT, and children inherit that: restore it, or the
        # deadline's SIGINT would be ignored by every toolkit that does not install its own handler
        proc = subprocess.Popen(cmd, stdin=inp, stdout=out if stdout else err, stderr=err, env=full_env, cwd=cwd,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            proc.send_signal(signal.SIGINT)

        timer = threading.Timer(deadline_s, interrupt) if deadline_s else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        if timer:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Finished(proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024, log, fired.is_set())


# --- training logs -----------------------------------------------------------------------------

Point = tuple[int, float, float]  # (step, time in seconds, real target tokens since the previous point)

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3})")
_JOEY = re.compile(r"Step:\s*(\d+),.*Tokens per Sec:\s*([\d.]+)")
_ONMT = re.compile(r"Step\s+(\d+)(?:/\s*\d+)?;.*?bsz:\s*([\d.]+)/\s*([\d.]+)/\s*([\d.]+);")


def _stamp(line: str) -> float | None:
    found = _STAMP.search(line)
    if not found:
        return None
    return datetime.strptime(found.group(1).replace(",", "."), "%Y-%m-%d %H:%M:%S.%f").timestamp()


def joey_points(log: Path) -> list[Point]:
    """Joey logs tokens/s over each interval: tokens = rate x the time between its log lines."""
    points: list[Point] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        found, stamp = _JOEY.search(line), _stamp(line)
        if found and stamp is not None:
            step, rate = int(found.group(1)), float(found.group(2))
            tokens = rate * (stamp - points[-1][1]) if points else 0.0
            points.append((step, stamp, tokens))
    return points


def onmt_points(log: Path) -> list[Point]:
    """OpenNMT-py logs the mean target tokens per batch (bsz: src/tgt/sents) over each interval."""
    points: list[Point] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        found, stamp = _ONMT.search(line), _stamp(line)
        if found and stamp is not None:
            step = int(found.group(1))
            previous = points[-1][0] if points else 0
            points.append((step, stamp, float(found.group(3)) * (step - previous)))
    return points


def train_rate(points: list[Point], warmup: int) -> dict:
    """Tokens/s and tokens/step over the points after ``warmup`` (which must be a logged step)."""
    start = next((i for i, p in enumerate(points) if p[0] >= warmup), None)
    if start is None or start == len(points) - 1:
        raise ValueError(f"too few logged steps after the warm-up of {warmup} (logged: {[p[0] for p in points]})")
    timed = points[start + 1:]
    tokens = sum(p[2] for p in timed)
    seconds = timed[-1][1] - points[start][1]
    steps = timed[-1][0] - points[start][0]
    return {"train_tok_s": tokens / seconds, "timed_steps": steps, "timed_s": seconds,
            "tgt_tokens_per_step": tokens / steps, "s_per_step": seconds / steps}


# --- translation logs --------------------------------------------------------------------------

def joey_translate_seconds(log: Path) -> float:
    """Joey: ``Generation took X[sec]`` (model loading and tokenisation excluded)."""
    found = re.findall(r"Generation took ([\d.]+)\[sec\]", log.read_text(encoding="utf-8", errors="replace"))
    if not found:
        raise ValueError(f"{log}: no 'Generation took' line")
    return float(found[-1])


def onmt_translate_seconds(log: Path, sentences: int) -> float:
    """OpenNMT-py ``-report_time``: average ms per sentence x sentences (model loading excluded)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    found = re.findall(r"Average translation time \(ms\): ([\d.]+)", text)
    if not found:
        raise ValueError(f"{log}: no 'Average translation time' line")
    return float(found[-1]) * sentences / 1000
