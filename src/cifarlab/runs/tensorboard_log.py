"""A run's TensorBoard event files (`--tensorboard`, the `tensorboard` extra): loss and
learning rate every `--log-every` steps, each epoch's row of metrics.csv, and at the end the
test metrics with the settings (hparams), the confusion matrix and the prediction grid as
images.

Every scalar is logged at the global step (optimiser steps so far), epochs too, so that a
resumed run can purge what a killed run wrote after its last checkpoint: SummaryWriter's
`purge_step` makes TensorBoard drop the old events from that step on, and the curves continue
with no step twice and none missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch")


class TensorBoardLog:
    def __init__(self, path: Path, purge_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CifarlabError("--tensorboard needs the tensorboard package: pip install "
                                "'cifarlab[tensorboard]'") from None
        self.path = path
        self.writer = SummaryWriter(str(self.path), purge_step=purge_step or None)

    def step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("step/loss", loss, step)
        self.writer.add_scalar("step/lr", lr, step)

    def epoch(self, row: dict[str, Any], step: int) -> None:
        """One metrics.csv row as epoch/<column> scalars at the epoch's last step."""
        for key in EPOCH_KEYS:
            if row.get(key) is not None:
                self.writer.add_scalar(f"epoch/{key}", row[key], step)
        self.writer.flush()

    def final(self, config: dict[str, Any], metrics: dict[str, Any], figures: dict[str, Any],
              step: int) -> None:
        """The evaluation's top-1/top-5/loss with the run's settings (TensorBoard's HPARAMS
        tab), and the pictures (matplotlib figures) as images."""
        split = metrics.get("evaluated_on", "test")
        scores = {f"hparam/{split}_{k}": metrics[f"{split}_{k}"] for k in ("top1", "top5", "loss")}
        settings = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                    for k, v in config.items() if k not in ("run_dir", "data_dir")}
        self.writer.add_hparams(settings, scores, run_name="hparams", global_step=step)
        for name, fig in figures.items():
            self.writer.add_figure(f"{split}/{name}", fig, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
