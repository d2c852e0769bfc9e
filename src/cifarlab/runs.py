"""The run folder and what keeps it safe: everything written into it (`RunFolder`), one process
per folder (a lock file holding the owner's pid), a clean stop on Ctrl-C / SIGTERM, where a run
stands (`TrainState`) and the random-number state a resumed run needs to continue exactly where
it stopped."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarlab.checkpoint import load_checkpoint, save_checkpoint
from cifarlab.config import Config
from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.progress import MetricsCSV, RunLog
from cifarlab.tensorboard_log import TensorBoardLog


class TrainingInterrupted(CifarlabError):
    """Ctrl-C or SIGTERM stopped training after saving; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass
class TrainState:
    """Progress: saved in last.pt every epoch, restored on resume."""

    epoch: int = 0  # finished epochs
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best, for early stopping
    early_stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv's rows
    elapsed: float = 0.0  # training seconds of the processes before this one
    partial: dict[str, Any] | None = None  # this process's part of an epoch a signal stopped

    def record(self, row: dict[str, Any], has_val: bool, patience: int | None) -> bool:
        """Add a finished epoch; whether it is the best so far. Without a validation split
        the last epoch is the chosen one: never the test set."""
        self.epoch = row["epoch"]
        self.history.append(row)
        score = row["val_acc"] if has_val else float(row["epoch"])
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, row["epoch"], 0
        else:
            self.bad_epochs += 1
        self.early_stopped = bool(has_val and patience and self.bad_epochs >= patience)
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "partial"}  # partial: per rank

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name != "partial":
                setattr(self, f.name, state[f.name])


class RunFolder:
    """One run's folder and all that is written into it: the lock, config.json, train.log,
    metrics.csv, best.pt / last.pt, metrics.json and, when the run ends, state.json. With
    `enabled=False` (every torchrun process but rank 0) it writes nothing. Open it with
    `with`: the lock is held inside."""

    def __init__(self, path: str | os.PathLike, quiet: bool = False, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.lock = RunLock(self.path)
        self.log = RunLog(self.path / "train.log", quiet, enabled)
        self.csv: MetricsCSV | None = None
        self.tensorboard: TensorBoardLog | None = None

    def __enter__(self) -> RunFolder:
        if self.enabled:
            self.lock.acquire()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.enabled and self.lock.held:
                self.write_state(exc)
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
            self.lock.release()

    def write_state(self, exc: BaseException | None) -> None:
        """state.json, how the run ended: finished (metrics.json written), stopped (resumable:
        a signal, a second Ctrl-C), pruned (a search stopped it) or failed (the error)."""
        name = type(exc).__name__ if exc is not None else ""
        if exc is None:
            state = "finished" if (self.path / "metrics.json").exists() else "failed"
        elif isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
            state = "stopped"
        else:
            state = "pruned" if name == "TrialPruned" else "failed"
        info: dict[str, Any] = {"state": state, "ended": datetime.now().isoformat("T", "seconds")}
        if exc is not None:
            info["message"] = (str(exc).strip().splitlines() or [name])[0]
        if state == "stopped" and self.last.is_file():
            info["resume"] = f"cifarlab train --resume {self.path}"
        # On a full disk the run's own error says more than this file could.
        with contextlib.suppress(OSError):
            publish_text(self.path / "state.json", json.dumps(info, indent=2) + "\n")

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    def check_resumable(self) -> None:
        """A stopped run: it has last.pt and no metrics.json."""
        if (self.path / "metrics.json").exists():
            raise CifarlabError(f"{self.path} finished already (it has metrics.json); nothing "
                                "to resume")
        if not self.last.is_file():
            raise CifarlabError(f"{self.path} holds no last.pt to resume from; is it a run "
                                "folder whose first epoch finished?")

    def write_config(self, cfg: Config) -> None:
        if self.enabled:
            publish_text(self.path / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")

    def start_metrics(self, rows: list[dict[str, Any]]) -> None:
        """metrics.csv from the rows a resumed run already has."""
        self.csv = MetricsCSV(self.path / "metrics.csv", rows, enabled=self.enabled)

    def open_tensorboard(self, done: int) -> None:
        """Event files of a run that has taken `done` steps: what a killed run wrote for any
        later step is dropped."""
        if self.enabled:
            self.tensorboard = TensorBoardLog(self.path, purge_step=done + 1 if done else 0)

    def add_row(self, row: dict[str, Any], step: int) -> None:
        """An epoch's row: metrics.csv, and TensorBoard at global step `step`."""
        assert self.csv is not None, "start_metrics first"
        self.csv.add(row)
        if self.tensorboard is not None:
            self.tensorboard.epoch(row, step)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        if self.tensorboard is not None:
            self.tensorboard.step(step, loss, lr)

    def save(self, name: str, model: nn.Module, cfg: Config, classes: list[str],
             **extra: Any) -> None:
        """best.pt or last.pt: the weights, what is needed to use them, and `extra`."""
        if self.enabled:
            save_checkpoint(self.path / name, model, cfg.to_dict(), classes,
                            cfg.normalization(), **extra)

    def load(self, name: str) -> dict[str, Any]:
        return load_checkpoint(self.path / name)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """metrics.json, the mark of a finished run."""
        if self.enabled:
            publish_text(self.path / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def make_run_dir(run_dir: str | None, preset: str) -> Path:
    """The folder of a new run: `run_dir`, which must not hold a run yet, or a fresh
    runs/<timestamp>-<preset>."""
    if run_dir:
        path = Path(run_dir)
        if (path / "metrics.csv").exists() or (path / "last.pt").exists():
            raise CifarlabError(f"{path} already holds a run; choose another --run-dir, or "
                                f"continue it with: cifarlab train --resume {path}")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{stamp}-{preset}"
        n = 1
        while path.exists():  # two runs started in the same second
            n += 1
            path = Path("runs") / f"{stamp}-{preset}-{n}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CifarlabError(f"cannot create run folder {path}: {e.strerror}") from None
    return path


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """`RUN_DIR/lock` holds "pid host" of the process writing the folder. A second process is
    refused; a lock left by a process that died on this host is taken over."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "lock"
        self.held = False

    def acquire(self) -> RunLock:
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self.owner() or (0, "?")
                if host == socket.gethostname() and pid and not process_alive(pid):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise CifarlabError(
                    f"{self.path.parent} is in use by process {pid} on {host}; wait for it or "
                    f"stop it (if no run uses the folder, delete {self.path})") from None
            except OSError as e:
                raise CifarlabError(f"cannot write to run folder {self.path.parent}: "
                                    f"{e.strerror}") from None
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self.held = True
            return self
        raise CifarlabError(f"could not take the lock {self.path}; delete it and retry")

    def owner(self) -> tuple[int, str] | None:
        """(pid, host) written in the lock file; None without a readable one."""
        try:
            words = self.path.read_text().split()
        except OSError:
            return None
        return (int(words[0]), words[1]) if len(words) == 2 and words[0].isdigit() else None

    def live_owner(self) -> str | None:
        """Who holds the folder now ("process PID", or "on HOST" for another machine), or
        None when nobody does (no lock, or its process on this host is gone)."""
        pid, host = self.owner() or (0, "")
        if host and host != socket.gethostname():
            return f"on {host}"
        return f"process {pid}" if pid and process_alive(pid) else None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class StopRequest:
    """While active, SIGINT and SIGTERM only set `signum`; training checks it between steps,
    saves and stops. A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def active(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals go to the main thread only; nothing to install here
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a run draws from, as plain data and tensors (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
             "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():  # Apple GPUs: dropout and friends draw from it
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])
