"""Scalar logging: a CSV file (default) or TensorBoard event files.

``log.csv`` is rewritten whole, atomically (:func:`regard.files.write_text`), at every row:
a crash never leaves half a row, and a resumed run first drops the rows of the steps it
will do again, so no step is logged twice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from regard.errors import RegardError
from regard.files import write_text

COLUMNS = ["step", "epoch", "lr", "train_loss", "tok_s", "valid_loss", "valid_bleu", "elapsed_s"]
GUIDED = "train_guided"  # the guided-alignment loss (train.guided_alignment_weight), after train_loss


def columns(guided: bool = False) -> list[str]:
    """The columns of ``log.csv``: :data:`COLUMNS`, with :data:`GUIDED` when training is guided."""
    return COLUMNS[:4] + [GUIDED] + COLUMNS[4:] if guided else COLUMNS


def read_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """The rows of an existing ``log.csv`` whose step is at most ``up_to_step`` (none if no file)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if _step(row) is not None and _step(row) <= up_to_step]


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None


class ScalarLog:
    """One row of scalars per evaluation, in ``out/log.csv`` (or, for ``tensorboard``, as event
    files in ``out/tensorboard/``). ``start_step``: the step training starts from; rows (events)
    logged after it by an earlier attempt are dropped. ``guided``: log the guided-alignment loss too."""

    def __init__(self, out: Path, kind: str = "csv", start_step: int = 0, guided: bool = False):
        self.kind, self.columns = kind, columns(guided)
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RegardError("train.log: tensorboard needs the 'tensorboard' package "
                                  "(pip install 'regard[tensorboard]'), or use log: csv") from None
            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1 if start_step else None)
            return
        self.path = out / "log.csv"
        self.rows = read_rows(self.path, start_step)
        self._save()

    def write(self, **scalars: float) -> None:
        if self.kind == "tensorboard":
            for key, value in scalars.items():
                if key != "step":
                    self.writer.add_scalar(key, value, scalars["step"])
            return
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in scalars.items()})
        self._save()

    def _save(self) -> None:
        text = io.StringIO()
        table = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        table.writeheader()
        table.writerows(self.rows)
        write_text(self.path, text.getvalue())

    def close(self) -> None:
        if self.kind == "tensorboard":
            self.writer.close()
