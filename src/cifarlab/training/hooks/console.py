"""The run's lines (train.log, and the console unless quiet): what is trained on what at the
start, one line per epoch with its loss, accuracy, learning rate and time left, and an early
stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from cifarlab.runs import RunFolder
from cifarlab.runs.logs import epoch_line
from cifarlab.training.hooks.base import Hook
from cifarlab.version import __version__

if TYPE_CHECKING:
    from cifarlab.training.trainer import Trainer


class Console(Hook):
    def __init__(self, folder: RunFolder):
        self.folder = folder

    def on_fit_start(self, trainer: Trainer) -> None:
        for line in start_lines(trainer, self.folder):
            self.folder.log(line)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        epoch = row["epoch"]
        epochs = trainer.cfg.epochs
        eta = row["elapsed_seconds"] / epoch * (epochs - epoch)
        self.folder.log(epoch_line(row, epochs, eta))
        if trainer.state.early_stopped:
            self.folder.log(f"early stop: no better validation accuracy for "
                            f"{trainer.cfg.patience} epochs")


def start_lines(trainer: Trainer, folder: RunFolder) -> list[str]:
    """The model and where it trains, the data, and what a resumed run continues from."""
    cfg = trainer.cfg
    nets = trainer.nets
    data = trainer.data
    params = sum(p.numel() for p in nets.model.parameters())
    precision = str(nets.amp or torch.float32).replace("torch.", "")
    lines = [f"cifarlab {__version__}  preset {cfg.preset}  model {cfg.model} "
             f"({params / 1e6:.2f}M parameters)  device {trainer.device}  precision {precision}"
             + ("  compiled" if nets.compiled else "")]
    if nets.compile_blocker:
        lines.append(f"not compiled: {nets.compile_blocker}; training without it (slower)")
    test = (f"{len(data.test_images)} test images" if data.has_test else
            "no test set (no test/ folder): validation only")
    lines.append(f"{cfg.dataset}: {len(data.train_images)} train, {len(data.val_images)} "
                 f"val images, {test}  ->  {folder.path}")
    if data.excluded:  # --exclude
        kinds = ", ".join(f"{k} {n}" for k, n in data.excluded.get("findings", {}).items())
        lines.append(f"left out {data.excluded['images']} training images listed in "
                     f"{data.excluded['from']}" + (f" ({kinds})" if kinds else ""))
    step = trainer.state.partial["step"] if trainer.state.partial else 0
    if trainer.state.epoch or step:
        lines.append(f"resuming after epoch {trainer.state.epoch}"
                     + (f" at step {step}" if step else ""))
    return lines + trainer.notes
