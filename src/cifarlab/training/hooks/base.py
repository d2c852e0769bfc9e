"""The hook phases (`Hook`), several hooks as one (`Hooks`), and what a step leaves them
(`StepEnd`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from cifarlab.training.trainer import Trainer


@dataclass(frozen=True)
class StepEnd:
    """What an optimizer step leaves for the hooks."""

    epoch: int
    step: int  # in the epoch
    index: int  # in the run: the steps taken before this one
    loss: torch.Tensor  # the batch's mean loss, on the device (`.item()` waits for it)


class Hook:
    """A side effect of training; override the phases it needs (all do nothing here)."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int, first: int) -> None: ...

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None: ...

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None: ...

    def on_interrupt(self, trainer: Trainer, epoch: int, step: int) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...


class Hooks(Hook):
    """Several hooks called in turn, in their order."""

    def __init__(self, hooks: Iterable[Hook] = ()):
        self.hooks = list(hooks)

    def on_fit_start(self, trainer: Trainer) -> None:
        for hook in self.hooks:
            hook.on_fit_start(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int, first: int) -> None:
        for hook in self.hooks:
            hook.on_epoch_start(trainer, epoch, first)

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        for hook in self.hooks:
            hook.on_step_end(trainer, step)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        for hook in self.hooks:
            hook.on_epoch_end(trainer, row)

    def on_interrupt(self, trainer: Trainer, epoch: int, step: int) -> None:
        for hook in self.hooks:
            hook.on_interrupt(trainer, epoch, step)

    def on_fit_end(self, trainer: Trainer) -> None:
        for hook in self.hooks:
            hook.on_fit_end(trainer)

