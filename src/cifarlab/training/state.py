"""What a training run keeps beside its networks and optimizer: its progress (`TrainState`),
the running sums of the epoch in progress (`EpochSums`), its random streams (`TrainRandom`)
and the stop requests of signals (`StopRequest`). Each saves and restores its own state
(`state_dict()` / `load_state_dict()`), for an exact resume."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from cifarlab.training.distributed import Dist


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
            self.best_score = score
            self.best_epoch = row["epoch"]
            self.bad_epochs = 0
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


class EpochSums:
    """The epoch in progress: its data order, and the loss and correct answers summed over
    the images this process has seen (on the device: no host sync per step)."""

    def __init__(self, order: torch.Tensor, device: torch.device):
        self.order = order.to(device)
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss.detach() * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += len(labels)

    def means(self, dist: Dist) -> tuple[float, float]:
        """(mean loss, accuracy %) over every process's images."""
        count = torch.tensor(float(self.seen), device=self.loss.device)
        dist.sum_(self.loss, self.correct, count)
        return ((self.loss / count.clamp(min=1)).item(),
                100.0 * self.correct.item() / max(count.item(), 1))

    def partial(self, step: int) -> dict[str, Any]:
        """What last.pt keeps of an epoch a signal stopped before `step` (TrainState.partial)."""
        return dict(order=self.order.cpu(), step=step, seen=self.seen, loss=self.loss.item(),
                    correct=self.correct.item())

    @classmethod
    def resumed(cls, partial: dict[str, Any], device: torch.device) -> EpochSums:
        """The sums of a stopped epoch, to go on from its `partial["step"]`."""
        sums = cls(partial["order"], device)
        sums.loss += partial["loss"]
        sums.correct += partial["correct"]
        sums.seen = partial["seen"]
        return sums


def augmentation_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The seed of process `rank`'s augmentation stream (`epoch`: a fresh stream for a run
    resumed at an epoch's end with another number of processes)."""
    return seed + 1 + 1000 * rank + epoch


class TrainRandom:
    """The random streams a run draws from:

    - `order`: the data order of each epoch (CPU), the same in every process, so that all take
      their share of one permutation;
    - `aug`: augmentation draws (on the training device), one stream per process;
    - `flip_bits`: with alternating flips, each image's first-epoch flip, drawn once from rank
      0's stream, so the same in every process; then each image flips the other way each epoch;
    - Python's, NumPy's and torch's global generators (initial weights, mixup's Beta, dropout).
    """

    def __init__(self, seed: int, rank: int, device: torch.device, flip_images: int = 0):
        self.seed = seed
        self.order = torch.Generator().manual_seed(seed)
        self.aug = torch.Generator(device=device).manual_seed(augmentation_seed(seed, 0))
        self.flip_bits = (torch.rand(flip_images, generator=self.aug, device=device) < 0.5
                          if flip_images else None)
        if rank:  # every process augments its own share with its own draws
            self.aug.manual_seed(augmentation_seed(seed, rank))

    def reseed_augmentation(self, rank: int, epoch: int) -> None:
        self.aug.manual_seed(augmentation_seed(self.seed, rank, epoch))

    def state_dict(self) -> dict[str, Any]:
        """Every random state, as plain data and tensors (weights_only-safe)."""
        np_state = np.random.get_state()
        rng = {"python": random.getstate(),
               "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
               "torch": torch.get_rng_state(), "device": self.aug.device.type,
               "generators": {"order": self.order.get_state(), "aug": self.aug.get_state()}}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if torch.backends.mps.is_available():  # Apple GPUs: dropout and friends draw from it
            rng["mps"] = torch.mps.get_rng_state()
        flips = self.flip_bits.cpu() if self.flip_bits is not None else None
        return {"rng": rng, "flip_bits": flips}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every random state as saved; the augmentation stream only when it was saved on
        this kind of device (see `restore_augmentation`)."""
        rng = state["rng"]
        version, python_state, gauss = rng["python"]
        random.setstate((version, tuple(python_state), gauss))
        kind, keys, *rest = rng["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():  # as many GPUs as both machines have
            for index, gpu_state in enumerate(rng["cuda"][:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(gpu_state, index)
        if "mps" in rng and torch.backends.mps.is_available():
            torch.mps.set_rng_state(rng["mps"])
        self.order.set_state(rng["generators"]["order"])
        if self.saved_on(state) == self.aug.device.type:
            self.aug.set_state(rng["generators"]["aug"])
        if state["flip_bits"] is not None:
            self.flip_bits = state["flip_bits"].to(self.aug.device)

    @staticmethod
    def saved_on(state: dict[str, Any]) -> str:
        """The kind of device whose augmentation stream `state` holds (older files: the CPU,
        the only device they ran on)."""
        return state["rng"].get("device", "cpu")

    def restore_augmentation(self, state: dict[str, Any], aug_state: torch.Tensor, rank: int,
                             epoch: int) -> str | None:
        """Continue process `rank`'s augmentation stream from `aug_state`; when it was saved on
        another kind of device, whose generators keep another state, draw a fresh stream of
        its own seed instead (the same on every resume) and say so."""
        saved = self.saved_on(state)
        if saved == self.aug.device.type:
            self.aug.set_state(aug_state)
            return None
        self.reseed_augmentation(rank, epoch)
        return (f"the run was saved on {saved} and continues on {self.aug.device.type}: its "
                "augmentation draws start a fresh stream (reproducible, not the one it would "
                "have drawn there)")


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
