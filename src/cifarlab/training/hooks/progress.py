"""What a terminal shows while an epoch runs: a progress bar over its steps, and when the first
epoch will be long, a line saying about how long (the epoch's own line comes at its end)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm import tqdm

from cifarlab.runs.logs import format_duration
from cifarlab.training.hooks.base import Hook, StepEnd

if TYPE_CHECKING:
    from cifarlab.training.trainer import Trainer

TIMED_STEPS = 3  # steps after the first (warm-up) that time an epoch
LONG_EPOCH = 120  # seconds: an epoch longer than this is announced


class ProgressBar(Hook):
    """A bar over the steps of each epoch, shown only when stderr is a terminal."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_epoch_start(self, trainer: Trainer, epoch: int, first: int) -> None:
        self.bar = tqdm(total=trainer.steps_per_epoch, initial=first,
                        desc=f"epoch {epoch}/{trainer.cfg.epochs}", leave=False,
                        file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        self.bar.update()

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        self.on_fit_end(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LongEpochNotice(Hook):
    """After the first few steps this process takes: when its first epoch will take more than
    LONG_EPOCH seconds, say about how long."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.timing: tuple[int, float] | None = None  # the first epoch's first step and start
        self.done = False

    def on_epoch_start(self, trainer: Trainer, epoch: int, first: int) -> None:
        if not self.done:
            self.timing = first, time.perf_counter()

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        if self.done or step.step != self.timing[0] + TIMED_STEPS:
            return
        self.done = True
        first, started = self.timing
        taken = step.step + 1 - first
        left = trainer.steps_per_epoch - first
        seconds = (time.perf_counter() - started) / taken
        if seconds * left > LONG_EPOCH:
            self.log(f"epoch {step.epoch}/{trainer.cfg.epochs} will take about "
                     f"{format_duration(seconds * left)} ({seconds:.1f} s a step, {left} steps)")

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        self.done = True  # an epoch of fewer steps: nothing to announce later
