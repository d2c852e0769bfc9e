"""What a run shows and keeps: a line per epoch (also in train.log), a bar inside the epoch on a
terminal, and metrics.csv written as each epoch ends."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from tqdm import tqdm

from cifarlab.files import append_text, publish_text

CSV_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
               "epoch_seconds", "elapsed_seconds")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RunLog:
    """Prints lines to stdout and appends them to the run's train.log."""

    def __init__(self, path: Path, quiet: bool = False, enabled: bool = True):
        self.path = path
        self.quiet = quiet
        self.enabled = enabled  # off in every process but rank 0

    def __call__(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        if echo and not self.quiet:
            print(message, flush=True)
        append_text(self.path, message + "\n")


class MetricsCSV:
    """metrics.csv: a header, then one row per finished epoch, written as each epoch ends.
    Opening it rewrites the rows a resumed run already has, and nothing after them."""

    def __init__(self, path: Path, rows: list[dict] = (), enabled: bool = True):
        self.path = path
        self.enabled = enabled  # off in every process but rank 0
        if enabled:
            publish_text(path, _csv_line(CSV_COLUMNS) + "".join(map(self._row, rows)))

    def add(self, row: dict) -> None:
        if self.enabled:
            append_text(self.path, self._row(row))

    @staticmethod
    def _row(row: dict) -> str:
        return _csv_line([_fmt(row.get(c)) for c in CSV_COLUMNS])


def _csv_line(values) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def epoch_bar(steps: int, epoch: int, epochs: int, initial: int = 0) -> tqdm:
    """A progress bar over the batches of one epoch, shown only when stderr is a terminal."""
    return tqdm(total=steps, initial=initial, desc=f"epoch {epoch}/{epochs}", leave=False,
                file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True)


def epoch_line(row: dict, epochs: int, eta: float) -> str:
    val = "" if row["val_acc"] is None else f"  val {row['val_acc']:6.2f}%"
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  "
            f"train {row['train_acc']:6.2f}%{val}  lr {row['lr']:.4g}  "
            f"{format_duration(row['epoch_seconds'])}  eta {format_duration(eta)}")
