"""Scalar logging: a CSV file (default) or TensorBoard event files."""

from __future__ import annotations

import csv
from pathlib import Path

from regard.errors import RegardError

COLUMNS = ["step", "epoch", "lr", "train_loss", "tok_s", "valid_loss", "valid_bleu", "elapsed_s"]


class ScalarLog:
    """One row of scalars per evaluation, appended to ``out/log.csv`` (or, for ``tensorboard``,
    written as event files in ``out/tensorboard/``)."""

    def __init__(self, out: Path, kind: str = "csv"):
        self.kind = kind
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RegardError("train.log: tensorboard needs the 'tensorboard' package "
                                  "(pip install 'regard[tensorboard]'), or use log: csv") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))
            return
        path = out / "log.csv"
        new = not path.exists()
        self.handle = path.open("a", newline="", encoding="utf-8")
        self.csv = csv.DictWriter(self.handle, fieldnames=COLUMNS)
        if new:
            self.csv.writeheader()

    def write(self, **scalars: float) -> None:
        if self.kind == "tensorboard":
            for key, value in scalars.items():
                if key != "step":
                    self.writer.add_scalar(key, value, scalars["step"])
            return
        self.csv.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in scalars.items()})
        self.handle.flush()

    def close(self) -> None:
        (self.writer if self.kind == "tensorboard" else self.handle).close()
