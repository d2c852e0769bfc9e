"""`--tensorboard`: the loss and learning rate every `--log-every` steps and each epoch's row,
at the global step (see runs.tensorboard_log for how a resumed run continues its curves). The
training job adds the evaluation at the end (`final`) and closes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cifarlab.runs import RunFolder
from cifarlab.runs.tensorboard_log import TensorBoardLog
from cifarlab.training.hooks.base import Hook, StepEnd

if TYPE_CHECKING:
    from cifarlab.training.trainer import Trainer


class TensorBoard(Hook):
    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.log: TensorBoardLog | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the event files of a run that has taken `done` steps: what a killed run wrote
        for any later step is dropped."""
        partial = trainer.state.partial
        done = trainer.steps_done(trainer.state.epoch, partial["step"] if partial else 0)
        self.log = TensorBoardLog(self.folder.tensorboard_path, purge_step=done + 1 if done else 0)

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        if (step.index + 1) % trainer.cfg.log_every == 0:
            self.log.step(step.index + 1, step.loss.item(), trainer.lr())

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.log.epoch(row, trainer.steps_done(row["epoch"]))

    def final(self, config: dict[str, Any], metrics: dict[str, Any],
              figures: dict[str, Any], step: int) -> None:
        """The evaluation with the settings, and its pictures (see TensorBoardLog.final)."""
        self.log.final(config, metrics, figures, step)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
