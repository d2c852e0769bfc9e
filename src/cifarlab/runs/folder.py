"""A run's folder and every file in it, written and read back by one owner, `RunFolder`:

    cifarlab-run.json  the mark of a cifarlab run, written first (format, version): cifarlab
                   clears a folder's files only where it finds its own mark
    config.json    the resolved settings (usable again with --config)
    train.log      everything the run printed
    metrics.csv    one row per finished epoch
    best.pt        the chosen weights: best validation accuracy, else the last epoch
    last.pt        the last finished epoch's weights and the whole training state (--resume)
    metrics.json   the final evaluation: the mark of a finished run
    state.json     how the run ended: finished, stopped, pruned or failed
    lock           "pid host" of the process writing the folder
    tensorboard/   --tensorboard's event files
    report.html    the report (with the pictures the report draws beside it)
    calibration.json   `evaluate --calibrate`'s temperature, fitted on the validation split
    data.json      what the run trained on: classes, and each split's image count and SHA-256
    model.onnx, model.torchscript.pt    `cifarlab export`'s files

No other module names these files.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cifarlab.errors import (
    CheckpointError,
    CifarlabError,
    Pruned,
    TrainingInterrupted,
    first_line,
)
from cifarlab.files import publish_text, read_json_object
from cifarlab.runs.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from cifarlab.runs.config import Config
from cifarlab.runs.lock import RunLock
from cifarlab.runs.logs import MetricsCSV, RunLog, read_rows
from cifarlab.runs.package import WEIGHTS, is_package, read_package
from cifarlab.version import __version__

CONFIG = "config.json"
LOG = "train.log"
ROWS = "metrics.csv"
METRICS = "metrics.json"
STATE = "state.json"
LOCK = "lock"
CALIBRATION = "calibration.json"
DATA = "data.json"
REPORT = "report.html"
TENSORBOARD = "tensorboard"
CHECKPOINTS = {"best": "best.pt", "last": "last.pt"}
EXPORTS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
MARKS = (CONFIG, STATE, ROWS)  # any of them: a run folder to read (runs before the mark too)
MARK = "cifarlab-run.json"
MARK_FORMAT = "cifarlab-run"
MARK_VERSION = 1
RUN_FILES = {MARK, CONFIG, LOG, ROWS, METRICS, STATE, LOCK, CALIBRATION, DATA, REPORT,
             TENSORBOARD, *CHECKPOINTS.values(), *EXPORTS.values()}  # every name a run writes
# What a run that stopped before its first epoch ended can leave (with *.tmp litter): a kill
# while its first checkpoint was written leaves best.pt without last.pt.
FIRST_EPOCH = {CONFIG, LOG, ROWS, STATE, LOCK, TENSORBOARD, DATA, CHECKPOINTS["best"]}
FIGURES = ("_top1", "_top5", "_loss", "_seconds", "_acc", "_f1", "_ece", "_nll", "_brier",
           "_epoch", "epochs")  # metrics.json's keys that hold numbers


def is_litter(name: str) -> bool:
    """A temporary file of `files.publishing` (NAME.PID.tmp) that a killed writer left."""
    stem, dot, ext = name.rpartition(".")
    return ext == "tmp" and bool(dot) and stem.rpartition(".")[2].isdigit()


class RunFolder:
    """One run's folder. Writing: open it with `with` (the lock is held inside, and state.json
    says how the run ended); with `writer=False` (every torchrun process but rank 0) it writes
    nothing. Reading needs no lock."""

    def __init__(self, path: str | os.PathLike, *, quiet: bool = False, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self.lock = RunLock(self.path / LOCK)
        self.log = RunLog(self.path / LOG, quiet, writer)

    @staticmethod
    def holds_run(path: str | os.PathLike) -> bool:
        return any((Path(path) / name).exists() for name in (MARK, *MARKS))

    def write_mark(self) -> None:
        """The mark that this folder is a cifarlab run, before anything else is written."""
        if self.writer:
            info = {"format": MARK_FORMAT, "version": MARK_VERSION, "cifarlab": __version__}
            publish_text(self.path / MARK, json.dumps(info, indent=2) + "\n")

    def marked(self) -> bool:
        """Whether cifarlab marked this folder as its run (a newer cifarlab's mark is refused:
        what it wrote may not be what this one knows)."""
        mark = self._json(MARK)
        if mark is None or mark.get("format") != MARK_FORMAT:
            return False
        if not isinstance(mark.get("version"), int) or mark["version"] > MARK_VERSION:
            raise CifarlabError(f"{self.path / MARK} was written by a newer cifarlab; "
                                "upgrade cifarlab to use this run")
        return True

    # --- the run's lifetime
    def __enter__(self) -> RunFolder:
        if self.writer:
            self.lock.acquire()
            # The lock's holder is the only writer: a temporary file here is a killed
            # writer's (a SIGKILL mid-publish), never to be renamed.
            for litter in self.path.glob("*.tmp"):
                if is_litter(litter.name):
                    litter.unlink(missing_ok=True)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.writer and self.lock.held:
                self.write_state(exc)
        finally:
            self.lock.release()

    def write_state(self, exc: BaseException | None) -> None:
        """state.json, how the run ended: finished (metrics.json written), stopped (resumable:
        a signal, a second Ctrl-C), pruned (a search stopped it) or failed (the error)."""
        if exc is None or (self.finished and isinstance(exc, KeyboardInterrupt)):
            state = "finished" if self.finished else "failed"
        elif isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
            state = "stopped"
        else:
            state = "pruned" if isinstance(exc, Pruned) else "failed"
        info: dict[str, Any] = {"state": state, "ended": datetime.now().isoformat("T", "seconds")}
        if exc is not None and state == "finished":  # stopped while its report was drawn
            info["message"] = (f"stopped before its report was drawn; draw it with: cifarlab "
                               f"report {self.path}")
            with contextlib.suppress(CifarlabError):  # a full disk: state.json still says so
                self.log(info["message"])
        elif exc is not None:
            info["message"] = first_line(exc)
        if state == "stopped" and self.checkpoint_path("last").is_file():
            info["resume"] = self.resume_command()
        # On a full disk the run's own error (the write that failed) says more than this
        # file's could.
        with contextlib.suppress(OSError, CifarlabError):
            publish_text(self.path / STATE, json.dumps(info, indent=2) + "\n")

    def resume_command(self) -> str:
        return f"cifarlab train --resume {self.path}"

    def check_resumable(self) -> None:
        """A stopped run: it has last.pt and no metrics.json (one that stopped before its
        first epoch ended has nothing to resume: train it again into the same folder)."""
        if self.finished:
            raise CifarlabError(f"{self.path} finished already (it has {METRICS}); nothing "
                                "to resume")
        if not self.checkpoint_path("last").is_file():
            raise CifarlabError(f"{self.path} holds no {CHECKPOINTS['last']} to resume from (its "
                                "first epoch never finished); start it again with: cifarlab "
                                f"train ... --run-dir {self.path}")

    # --- writing (nothing without `writer`)
    def write_config(self, cfg: Config) -> None:
        if self.writer:
            publish_text(self.path / CONFIG, json.dumps(cfg.to_dict(), indent=2) + "\n")

    def write_data_record(self, record: dict[str, Any]) -> None:
        """data.json: the fingerprint of the data the run trains on (DataSplits.fingerprint)."""
        if self.writer:
            publish_text(self.path / DATA, json.dumps(record, indent=2) + "\n")

    def data_record(self) -> dict[str, Any] | None:
        """data.json's content (None: an older run's, or not a run folder), checked."""
        record = self._json(DATA)
        if record is None:
            return None
        splits = [record.get(name) for name in ("train", "val", "test")]
        if not isinstance(record.get("classes"), list) or not all(
                isinstance(s, dict) and isinstance(s.get("images"), int)
                and isinstance(s.get("sha256"), str) for s in splits):
            raise CheckpointError(f"{self.path / DATA} is damaged (it should hold the classes "
                                  "and each split's images and sha256)")
        return record

    def metrics_csv(self, rows: list[dict[str, Any]]) -> MetricsCSV:
        """metrics.csv, rewritten from the rows a resumed run already has, to add rows to."""
        return MetricsCSV(self.path / ROWS, rows, enabled=self.writer)

    @property
    def tensorboard_path(self) -> Path:
        return self.path / TENSORBOARD

    def save_checkpoint(self, which: str, *, config: Config, classes: list[str],
                        weights: dict[str, Any], epoch: int, val_acc: float | None,
                        resume: dict[str, Any] | None = None) -> None:
        """best.pt or last.pt (`which`: "best" or "last")."""
        if self.writer:
            write_checkpoint(self.checkpoint_path(which), config=config, classes=classes,
                             weights=weights, epoch=epoch, val_acc=val_acc, resume=resume)

    def write_calibration(self, calibration: dict[str, Any]) -> None:
        """calibration.json: the temperature and what it was fitted on (its "checkpoint": the
        file whose logits it divides)."""
        publish_text(self.path / CALIBRATION, json.dumps(calibration, indent=2) + "\n")

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """metrics.json, the mark of a finished run."""
        if self.writer:
            publish_text(self.path / METRICS, json.dumps(metrics, indent=2) + "\n")

    # --- reading
    @property
    def finished(self) -> bool:
        return (self.path / METRICS).exists()

    def settings(self, missing_ok: bool = False) -> Config | None:
        """The run's settings, as it trained with them (None: none written, if `missing_ok`)."""
        values = self._json(CONFIG)
        if values is None:
            if missing_ok:
                return None
            raise CheckpointError(f"{self.path} is not a run folder ({CONFIG} missing)")
        try:
            return Config.from_dict(values)
        except CifarlabError as e:
            raise CheckpointError(f"{self.path / CONFIG}: {e}") from None

    def metrics(self) -> dict[str, Any] | None:
        """metrics.json's content; None while the run has not finished. A figure that is not
        a number, or a finished run without its split's accuracy, is one clear error."""
        metrics = self._json(METRICS)
        if metrics is None:
            return None
        for key, value in metrics.items():
            if key.endswith(FIGURES) and value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float))):
                raise CheckpointError(f"{self.path / METRICS} is damaged ({key} is {value!r}, "
                                      "not a number)")
        split = metrics.get("evaluated_on")
        missing = [k for k in (f"{split}_top1", f"{split}_top5") if split and k not in metrics]
        if missing or (split and not isinstance(metrics.get("per_class"), dict)):
            raise CheckpointError(f"{self.path / METRICS} is damaged (no "
                                  f"{', '.join(missing) or 'per_class'})")
        return metrics

    def calibration(self) -> dict[str, Any] | None:
        """calibration.json's content (None: never calibrated)."""
        return self._json(CALIBRATION)

    def temperature_for(self, checkpoint: Path) -> float | None:
        """The fitted temperature, if it was fitted for `checkpoint` (a file of this folder)."""
        fitted = self.calibration() or {}
        if fitted.get("checkpoint") != checkpoint.name or checkpoint.parent != self.path:
            return None
        t = fitted.get("temperature")
        if not isinstance(t, (int, float)) or not t > 0:
            raise CheckpointError(f"{self.path / CALIBRATION} is damaged (temperature {t!r}); "
                                  "delete it, or calibrate again")
        return float(t)

    def rows(self) -> list[dict[str, Any]]:
        """metrics.csv's rows, as numbers (none before the first epoch ends)."""
        return read_rows(self.path / ROWS)

    def ended(self) -> dict[str, Any] | None:
        """state.json's content: how the run ended (None: running, killed, or older)."""
        return self._json(STATE)

    def checkpoint_path(self, which: str) -> Path:
        return self.path / CHECKPOINTS[which]

    def checkpoint(self, which: str) -> Checkpoint:
        return read_checkpoint(self.checkpoint_path(which))

    def chosen_checkpoint_path(self) -> Path:
        """best.pt, else last.pt (a run stopped before its first best)."""
        for which in ("best", "last"):
            if self.checkpoint_path(which).is_file():
                return self.checkpoint_path(which)
        raise CheckpointError(f"{self.path} holds no {CHECKPOINTS['best']} or "
                              f"{CHECKPOINTS['last']}; is it a cifarlab run folder?")

    def status(self) -> tuple[str, str]:
        """(state, detail): running (a live lock), else what state.json says, else finished
        when metrics.json exists, else "stopped or failed" (an older cifarlab's, or killed)."""
        if (holder := self.lock.live_owner()) is not None:
            return "running", holder
        ended = self.ended() or {}
        if ended.get("state") in ("finished", "stopped", "failed", "pruned"):
            key = "resume" if ended["state"] == "stopped" else "message"
            return ended["state"], ended.get(key, "")
        if self.finished:
            return "finished", ""
        resumable = self.checkpoint_path("last").is_file()
        return "stopped or failed", self.resume_command() if resumable else ""

    def started(self) -> datetime:
        """When the run started (config.json's time; train.log's, or the folder's)."""
        first = next((p for p in (self.path / CONFIG, self.path / LOG) if p.exists()),
                     self.path)
        return datetime.fromtimestamp(first.stat().st_mtime)

    # --- files others write into the folder
    @property
    def report_page(self) -> Path:
        return self.path / REPORT

    def export_path(self, fmt: str) -> Path:
        return self.path / EXPORTS[fmt]

    def saved_files(self) -> list[str]:
        """What a finished run keeps, for the last line of its log."""
        names = [*CHECKPOINTS.values(), METRICS, ROWS, TENSORBOARD, REPORT]
        return [n for n in names if (self.path / n).exists()]

    def _json(self, name: str) -> dict[str, Any] | None:
        """A JSON object file of the folder; None when absent, one clear error when damaged."""
        return read_json_object(self.path / name, CheckpointError)


def checkpoint_file(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, a run folder's chosen one (best.pt, else last.pt), or a
    model package's weights."""
    p = Path(path)
    if is_package(p):
        return p / WEIGHTS
    return RunFolder(p).chosen_checkpoint_path() if p.is_dir() else p


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint file, a run folder's chosen checkpoint, or a model package, read; with the
    temperature fitted for it, if any."""
    if is_package(path):
        return read_package(path)
    file = checkpoint_file(path)
    ckpt = read_checkpoint(file)
    folder = RunFolder(file.parent)
    if folder.holds_run(folder.path):
        ckpt.temperature = folder.temperature_for(file)
    return ckpt
