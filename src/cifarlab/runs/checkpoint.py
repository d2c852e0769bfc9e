"""The checkpoint file format: the weights, the run's resolved settings and class names, and,
in last.pt, the whole training state. Files are written atomically and read without running any
code (`weights_only`); older formats are read in today's terms.

    format, version   "cifarlab-checkpoint", VERSION
    config            the run's settings (Config.to_dict(), resolved: data folder, mean, std)
    classes           the class names, in output order
    state_dict        the weights to use: the EMA's when the run keeps one
    epoch, val_acc    the epoch they come from and its validation accuracy (None: no split)
    resume            last.pt only: the trainer's state_dict(), for an exact resume
    weights_sha256    a digest of the weights, checked when read (a flipped byte in the file
                      would otherwise load silently and predict worse)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.digests import add_tensor
from cifarlab.errors import CheckpointError, ConfigError
from cifarlab.files import publishing
from cifarlab.runs.config import Config

FORMAT = "cifarlab-checkpoint"
# 3: the settings resolved in `config`, which the header no longer repeats; 2: warm-up as a
# share of the run, fastnet's BatchNorm eps in its model_args.
VERSION = 3
FITTED = "fitted on the run's validation split"  # where a checkpoint's own temperature comes from


@dataclass
class Checkpoint:
    path: Path
    config: Config
    classes: list[str]
    state_dict: dict[str, torch.Tensor]
    epoch: int | None = None
    val_acc: float | None = None
    resume: dict[str, Any] | None = None
    temperature: float | None = None  # fitted for these weights (`evaluate --calibrate`)

    def calibration(self) -> tuple[float | None, str]:
        """The temperature that divides these weights' logits, and where it comes from: the
        one fitted for them on a validation split, else the one their settings carry (their
        preset's), else none."""
        if self.temperature is not None:
            return self.temperature, FITTED
        if self.config.temperature is not None:
            return self.config.temperature, (f"the {self.config.preset} preset's, fitted on "
                                             "the validation splits of its development runs")
        return None, "none"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DDP wrappers, whose state_dict keys are clean."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict on the CPU, detached (on the CPU: sharing the module's memory)."""
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the weights' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name]
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        add_tensor(digest, t)
    return digest.hexdigest()


def write_checkpoint(path: Path, *, config: Config, classes: Sequence[str],
                     weights: dict[str, torch.Tensor], epoch: int | None = None,
                     val_acc: float | None = None, resume: dict[str, Any] | None = None) -> None:
    """Write atomically (temporary file, then rename): a crash never leaves a half-written file.
    Tensors that `weights` and `resume` share are stored once."""
    state = {"format": FORMAT, "version": VERSION, "config": config.to_dict(),
             "classes": list(classes), "state_dict": weights, "epoch": epoch,
             "val_acc": val_acc, "resume": resume, "weights_sha256": weights_digest(weights)}
    with publishing(path, CheckpointError) as tmp:
        torch.save(state, tmp)


def check_fields(path: Path, state: dict[str, Any]) -> None:
    """The fields every reader relies on, of the types it expects: one clear error for a
    crafted or damaged file instead of a traceback later."""
    problems = []
    if not isinstance(state.get("version", 0), int):
        problems.append("its version is not a number")
    if not isinstance(state.get("config"), dict):
        problems.append("it has no settings")
    classes = state.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        problems.append("it has no list of class names")
    weights = state.get("state_dict")
    if not (isinstance(weights, dict) and weights and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())):
        problems.append("its weights are not a mapping of names to tensors")
    for key, kind in (("epoch", int), ("val_acc", (int, float)), ("resume", dict)):
        if state.get(key) is not None and not isinstance(state[key], kind):
            problems.append(f"its {key} is of the wrong type")
    if problems:
        raise CheckpointError(f"{path} is not a usable cifarlab checkpoint: "
                              f"{'; '.join(problems)}")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file safely (tensors and plain data only, no code), check its format
    and bring older versions to today's terms."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; give a run folder or a .pt checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p} is not a readable checkpoint ({type(e).__name__}); it may "
                              "be truncated or not made by cifarlab") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a cifarlab checkpoint (no '{FORMAT}' marker)")
    check_fields(p, state)
    recorded = state.get("weights_sha256")
    if recorded is not None and recorded != weights_digest(state["state_dict"]):
        raise CheckpointError(f"{p} is damaged: its weights do not match their digest (a "
                              "changed or corrupted file); use another checkpoint, or train "
                              "again")
    version = state.get("version", 0)
    if version > VERSION:
        raise CheckpointError(f"{p} was written by a newer cifarlab (format version "
                              f"{version}); upgrade cifarlab to read it")
    values = dict(state.get("config") or {})
    if version < 3:  # the header held the model and the normalisation
        values.setdefault("model", state.get("model"))
        if values.get("mean") is None and state.get("mean") is not None:
            values["mean"] = state["mean"]
            values["std"] = state["std"]
    try:
        config = Config.from_dict(values)
    except ConfigError as e:
        raise CheckpointError(f"{p}: its settings cannot be used here: {e}") from None
    return Checkpoint(p, config, list(state["classes"]), state["state_dict"],
                      state.get("epoch"), state.get("val_acc"), state.get("resume"))
