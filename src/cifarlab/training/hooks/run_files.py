"""The run folder's files as training goes: each epoch's metrics.csv row, best.pt when the
epoch is the best so far, last.pt (everything a resume needs) every epoch and when a signal
stops the run. Every process calls it (the state is gathered from all); only rank 0's folder
writes."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from cifarlab.errors import TrainingInterrupted
from cifarlab.runs import RunFolder
from cifarlab.runs.logs import MetricsCSV
from cifarlab.training.hooks.base import Hook

if TYPE_CHECKING:
    from cifarlab.training.trainer import Trainer


class RunFiles(Hook):
    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.rows: MetricsCSV | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self.rows = self.folder.metrics_csv(trainer.state.history)  # a resumed run's rows

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.state.best_epoch == row["epoch"]:
            self.folder.save_checkpoint("best", config=trainer.cfg, classes=trainer.data.classes,
                                        weights=trainer.weights(), epoch=row["epoch"],
                                        val_acc=row["val_acc"])
        self.rows.add(row)
        self.save_last(trainer)

    def on_interrupt(self, trainer: Trainer, epoch: int, step: int) -> None:
        """Save everything, say how to resume, and stop (exit code 130 for SIGINT, 143 for
        SIGTERM)."""
        self.save_last(trainer)
        signum = trainer.stop.signum
        launcher = (f"torchrun --nproc-per-node {trainer.dist.world} (as before) -m "
                    if trainer.dist.active else "")
        message = (f"stopped by {signal.Signals(signum).name} in epoch {epoch} at step {step}/"
                   f"{trainer.steps_per_epoch}; everything is saved in "
                   f"{self.folder.checkpoint_path('last')}. Resume with: {launcher}"
                   f"{self.folder.resume_command()}")
        self.folder.log(message, echo=False)
        raise TrainingInterrupted(message, signum)

    def save_last(self, trainer: Trainer) -> None:
        """last.pt: the weights to use and the whole state (a collective call)."""
        state = trainer.state_dict()
        history = trainer.state.history
        self.folder.save_checkpoint("last", config=trainer.cfg, classes=trainer.data.classes,
                                    weights=trainer.weights(state), epoch=trainer.state.epoch,
                                    val_acc=history[-1]["val_acc"] if history else None,
                                    resume=state)
