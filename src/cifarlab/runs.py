"""The run folder and what keeps it safe: everything written into it (`RunFolder`), one process
per folder (a lock file holding the owner's pid), a clean stop on Ctrl-C / SIGTERM, and the
random-number state a resumed run needs to continue exactly where it stopped."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import threading
from collections.abc import Iterator
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


class TrainingInterrupted(CifarlabError):
    """Ctrl-C or SIGTERM stopped training after saving; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class RunFolder:
    """One run's folder and all that is written into it: the lock, config.json, train.log,
    metrics.csv, best.pt / last.pt and metrics.json. With `enabled=False` (every torchrun
    process but rank 0) it writes nothing. Open it with `with`: the lock is held inside."""

    def __init__(self, path: str | os.PathLike, quiet: bool = False, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.lock = RunLock(self.path)
        self.log = RunLog(self.path / "train.log", quiet, enabled)
        self.csv: MetricsCSV | None = None

    def __enter__(self) -> RunFolder:
        if self.enabled:
            self.lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()

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

    def add_row(self, row: dict[str, Any]) -> None:
        assert self.csv is not None, "start_metrics first"
        self.csv.add(row)

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


def _alive(pid: int) -> bool:
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
                owner = self.path.read_text().split() if self.path.exists() else []
                pid, host = (int(owner[0]), owner[1]) if len(owner) == 2 else (0, "?")
                if host == socket.gethostname() and pid and not _alive(pid):
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
