"""The text a run keeps: train.log (every line it printed, a line per epoch among them) and
metrics.csv (one row per finished epoch), written as each epoch ends and read back here too."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from cifarlab.errors import CheckpointError
from cifarlab.files import append_text, publish_text

CSV_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
               "epoch_seconds", "elapsed_seconds")


def format_duration(seconds: float, precise: bool = False) -> str:
    """45s, 2m, 2m05s, 1h, 1h05m: as a user writes a duration (and --time reads it); with
    `precise`, a measured time as the benchmark tables give it: 45.3 s under two minutes,
    else 2.1 min."""
    if precise:
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" + (f"{seconds % 60:02d}s" if seconds % 60 else "")
    minutes = seconds % 3600 // 60
    return f"{seconds // 3600}h" + (f"{minutes:02d}m" if minutes else "")


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


def read_rows(path: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows as numbers (the epoch an int, an empty cell None); none when the
    file is absent. A damaged file is one clear error."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{key: _number(key, value) for key, value in row.items()}
                    for row in csv.DictReader(f)]
    except (OSError, ValueError, csv.Error) as e:
        raise CheckpointError(f"{path} is damaged ({e}); it is rewritten when the run is "
                              "resumed") from None


def _number(key: str | None, value: str | None) -> int | float | None:
    if key is None or value is None:  # a row with more or fewer cells than the header
        raise ValueError("a row does not match the header")
    if value == "":
        return None
    return int(value) if key == "epoch" else float(value)


def epoch_line(row: dict, epochs: int, eta: float) -> str:
    val = "" if row["val_acc"] is None else f"  val {row['val_acc']:6.2f}%"
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  "
            f"train {row['train_acc']:6.2f}%{val}  lr {row['lr']:.4g}  "
            f"{format_duration(row['epoch_seconds'])}  eta {format_duration(eta)}")
