"""Stage 4, training: the loop (`Trainer`) and its parts, each built by its own module: the
networks (`networks`), the optimizer and schedule (`optim`, `muon`), the progress, random
streams and stop requests (`state`), the processes of a torchrun job (`distributed`); and
`build_trainer`, which assembles them from a run's settings."""

from cifarlab.training.build import build_trainer
from cifarlab.training.trainer import Trainer

__all__ = ["Trainer", "build_trainer"]
