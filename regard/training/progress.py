"""What training shows while it runs: a progress bar on a terminal, plain lines elsewhere.

A bar redrawn with carriage returns is right for a person at a terminal and wrong for a
file (nohup, CI, a cluster's job log), where it becomes one line megabytes long. So
:class:`Reporter` draws tqdm's bar only when stderr is a terminal; otherwise, or when
``train.log_every`` asks for it, it prints one plain line every so often::

    step 1200/20000  loss 3.214  4,963 tok/s  epoch 2  elapsed 4m02s  left 12m58s
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LINE_SECONDS = 30.0  # a plain line this often when no step interval is set
TIMED_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"  # no steps ETA when a time limit rules


def clock(seconds: float) -> str:
    """3725 → '1h02m05s', 242 → '4m02s', 5 → '5s'."""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m{s % 60:02d}s" if h else f"{m}m{s % 60:02d}s" if m else f"{s}s"


class Reporter:
    """Progress of one training run: ``mode`` is ``bar``, ``lines`` or ``quiet``.

    ``every_steps`` > 0 prints a line every that many steps (in ``lines`` mode); otherwise
    a line at most every :data:`LINE_SECONDS`. Messages (validation results) are always
    printed, above the bar when there is one.
    """

    def __init__(self, total: int, initial: int, max_minutes: float, mode: str, every_steps: int = 0,
                 stream: TextIO = sys.stderr):
        self.total, self.max_minutes, self.mode, self.every = total, max_minutes, mode, every_steps
        self.stream, self.started, self.first_step = stream, time.time(), initial
        self.last_line = time.time()
        self.bar = None
        if mode == "bar":
            self.bar = tqdm(total=total, initial=initial, unit="step", mininterval=1.0, dynamic_ncols=True,
                            file=stream, bar_format=TIMED_BAR if max_minutes > 0 else None)

    @classmethod
    def choose(cls, show: bool, every_steps: int, stream: TextIO = sys.stderr) -> str:
        """The mode for a run: quiet, a bar on a terminal unless lines are asked for, else lines."""
        if not show:
            return "quiet"
        return "bar" if every_steps == 0 and stream.isatty() else "lines"

    def time_left(self, step: int, elapsed: float) -> float | None:
        """Seconds until max_steps at this run's pace, or until the time limit if sooner."""
        done, spent = step - self.first_step, time.time() - self.started
        left = (self.total - step) * spent / done if done > 0 else None
        if self.max_minutes > 0:
            limit = max(0.0, self.max_minutes * 60 - elapsed)
            left = limit if left is None else min(left, limit)
        return left

    def update(self, step: int, loss: float, tok_s: float, epoch: int, elapsed: float) -> None:
        """After each step."""
        if self.bar is not None:
            left = self.time_left(step, elapsed) if self.max_minutes > 0 else None
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:.0f}", epoch=epoch,
                                 **({"time_left": clock(left)} if left is not None else {}))
            return
        due = step % self.every == 0 if self.every else time.time() - self.last_line >= LINE_SECONDS
        if self.mode == "lines" and (due or step == self.total):
            self.last_line = time.time()
            left = self.time_left(step, elapsed)
            self.write(f"step {step}/{self.total}  loss {loss:.3f}  {tok_s:,.0f} tok/s  epoch {epoch}  "
                       f"elapsed {clock(elapsed)}" + (f"  left {clock(left)}" if left is not None else ""))

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
