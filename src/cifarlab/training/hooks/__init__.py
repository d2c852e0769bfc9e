"""A training run's side effects as hooks: the Trainer's loop calls them at named phases and
does nothing else outside itself.

    on_fit_start(trainer)                 before the first epoch this process trains
    on_epoch_start(trainer, epoch, first) before its first step (`first` > 0: a stopped
                                          epoch taken up again)
    on_step_end(trainer, step)            after every optimizer step (a `StepEnd`)
    on_epoch_end(trainer, row)            after validation: `row` is the epoch's metrics.csv row
    on_interrupt(trainer, epoch, step)    a signal stopped the run before `step`: save and say
                                          how to resume (by raising TrainingInterrupted)
    on_fit_end(trainer)                   when fitting ends, also by an error

A run's own hooks (`run_hooks`), in the order they are called: the progress bar, the
long-epoch notice, TensorBoard, the run folder's files, the log's lines; a search adds its
report to the trial (`jobs.tune`). Each lives in its own module here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cifarlab.training.hooks.base import Hook, Hooks, StepEnd
from cifarlab.training.hooks.console import Console
from cifarlab.training.hooks.progress import LongEpochNotice, ProgressBar
from cifarlab.training.hooks.run_files import RunFiles
from cifarlab.training.hooks.tensorboard import TensorBoard

if TYPE_CHECKING:
    from cifarlab.runs import Config, RunFolder

__all__ = ["Hook", "Hooks", "RunHooks", "StepEnd", "run_hooks"]


class RunHooks(Hooks):
    """A run's hooks, with its TensorBoard hook at hand (`--tensorboard`): the job adds the
    evaluation to it after training, then closes it (`close`)."""

    def __init__(self, hooks: Sequence[Hook], tensorboard: TensorBoard | None):
        super().__init__(hooks)
        self.tensorboard = tensorboard

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def run_hooks(cfg: Config, folder: RunFolder, extra: Sequence[Hook] = ()) -> RunHooks:
    """The hooks of a training run of settings `cfg` into `folder`, then `extra`."""
    board = TensorBoard(folder) if cfg.tensorboard and folder.writer else None
    return RunHooks([ProgressBar(), LongEpochNotice(folder.log), *([board] if board else []),
                     RunFiles(folder), Console(folder), *extra], board)
