"""Stage 4, training: the loop (`Trainer`) and its parts, each built by its own module: the
networks (`networks`), the optimizer and schedule (`optim`, `muon`), the progress, random
streams and stop requests (`state`), the processes of a torchrun job (`distributed`);
`build_trainer`, which assembles them from a run's settings; and the loop's side effects as
hooks called at named phases (`hooks`: `run_hooks` gives a run's own)."""

from cifarlab.training.build import build_trainer
from cifarlab.training.hooks import Hook, run_hooks
from cifarlab.training.trainer import Trainer

__all__ = ["Hook", "Trainer", "build_trainer", "run_hooks"]
