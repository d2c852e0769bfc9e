"""What a run shows and keeps: a line per epoch (also in train.log), a bar inside the epoch on a
terminal, and metrics.csv written as each epoch ends."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from tqdm import tqdm

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

    def __init__(self, path: Path, quiet: bool = False):
        self.path = path
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(message + "\n")


class MetricsCSV:
    """metrics.csv: a header, then one row per finished epoch, flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(CSV_COLUMNS)

    def add(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in CSV_COLUMNS])


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def epoch_bar(steps: int, epoch: int, epochs: int) -> tqdm:
    """A progress bar over the batches of one epoch, shown only when stderr is a terminal."""
    return tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, file=sys.stderr,
                disable=not sys.stderr.isatty(), dynamic_ncols=True)


def epoch_line(row: dict, epochs: int, eta: float) -> str:
    val = "" if row["val_acc"] is None else f"  val {row['val_acc']:6.2f}%"
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  "
            f"train {row['train_acc']:6.2f}%{val}  lr {row['lr']:.4g}  "
            f"{format_duration(row['epoch_seconds'])}  eta {format_duration(eta)}")
