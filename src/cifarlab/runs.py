"""The run folder and what keeps it safe: one process per folder (a lock file holding the
owner's pid), a clean stop on Ctrl-C / SIGTERM, and the random-number state a resumed run needs
to continue exactly where it stopped."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cifarlab.checkpoint import load_checkpoint, unwrap
from cifarlab.config import make_config
from cifarlab.errors import CheckpointError, CifarlabError

if TYPE_CHECKING:
    from cifarlab.train import Trainer


class TrainingInterrupted(CifarlabError):
    """Ctrl-C or SIGTERM stopped training after saving; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


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


RESUME_OVERRIDES = ("device", "num_threads", "data_dir")  # where it runs, not what it computes


def resume(run_dir: str | os.PathLike, quiet: bool = False, **overrides: Any) -> dict[str, Any]:
    """Continue a stopped run from its last.pt with the run's own settings; only where it runs
    (device, threads, data folder) may change."""
    run_dir = Path(run_dir)
    unknown = set(overrides) - set(RESUME_OVERRIDES)
    if unknown:
        raise CifarlabError(f"--resume continues with the run's own settings; only "
                            f"{', '.join(option_name(k) for k in RESUME_OVERRIDES)} may be given, "
                            f"not {', '.join(sorted(option_name(k) for k in unknown))}")
    if (run_dir / "metrics.json").exists():
        raise CifarlabError(f"{run_dir} finished already (it has metrics.json); nothing to resume")
    if not (run_dir / "last.pt").is_file():
        raise CifarlabError(f"{run_dir} holds no last.pt to resume from; is it a run folder "
                            "whose first epoch finished?")
    from cifarlab.train import Trainer  # train.py builds on this module

    saved = load_checkpoint(run_dir / "last.pt")["config"]
    cfg = make_config(**{**saved, **overrides})
    return Trainer(cfg, quiet=quiet, resume_dir=run_dir).fit()


def option_name(field: str) -> str:
    """The command-line option of a Config field: num_threads -> --num-threads."""
    return "--" + field.replace("_", "-")


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
        import threading

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
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def resume_state(t: Trainer, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything a run needs to continue exactly: saved in last.pt at every epoch's end.
    `ranks` holds each process's own part: its augmentation generator and stopped epoch."""
    return {
        "epoch": t.epoch, "ranks": ranks, "history": t.history,
        "best_score": t.best_score, "best_epoch": t.best_epoch,
        "bad_epochs": t.bad_epochs, "early_stopped": t.early_stopped,
        "elapsed": t.elapsed + time.perf_counter() - t.started,
        "model": {k: v.detach().cpu() for k, v in unwrap(t.model).state_dict().items()},
        "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict(),
        "ema": t.ema.state_dict() if t.ema is not None else None,
        "flip_bits": t.flip_bits.cpu() if t.flip_bits is not None else None,
        "rng": rng_state(t.generators),
    }


def load_resume_state(t: Trainer, ckpt: dict[str, Any]) -> None:
    """Put a freshly built Trainer back where `resume_state` left it."""
    r = ckpt.get("resume")
    if r is None:
        raise CheckpointError(f"{t.run_dir / 'last.pt'} holds no resume state")
    try:
        unwrap(t.model).load_state_dict(r["model"])
        if t.ema is not None:
            t.ema.load_state_dict(r["ema"])
        t.optimizer.load_state_dict(r["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{t.run_dir / 'last.pt'} does not fit this run's model "
                              f"and settings: {first}") from None
    t.scheduler.load_state_dict(r["scheduler"])
    t.scaler.load_state_dict(r["scaler"])
    if r["flip_bits"] is not None:
        t.flip_bits = r["flip_bits"].to(t.device)
    set_rng_state(r["rng"], t.generators)
    t.epoch, t.history = r["epoch"], r["history"]
    ranks = r["ranks"]
    if len(ranks) == t.dist.world:  # the same processes: each takes up its own part
        t.partial = ranks[t.dist.rank]["partial"]
        t.aug_gen.set_state(ranks[t.dist.rank]["aug"])
    elif ranks[0]["partial"] is not None:
        raise CifarlabError(f"{t.run_dir} was stopped in the middle of an epoch with "
                            f"{len(ranks)} process(es); resume it with as many")
    else:  # another number of processes, at an epoch's end: fresh augmentation draws
        t.partial = None
        t.aug_gen.manual_seed(t.cfg.seed + 1 + 1000 * t.dist.rank + t.epoch)
    t.best_score, t.best_epoch = r["best_score"], r["best_epoch"]
    t.bad_epochs, t.early_stopped = r["bad_epochs"], r["early_stopped"]
    t.elapsed = r["elapsed"]
