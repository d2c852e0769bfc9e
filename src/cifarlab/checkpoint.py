"""Checkpoints: weights plus everything needed to use them (model name, classes, normalisation)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.config import upgrade_config
from cifarlab.errors import CheckpointError
from cifarlab.files import publishing
from cifarlab.models import check_model, create_model

FORMAT = "cifarlab-checkpoint"
VERSION = 2  # 2: warm-up as a share of the run, fastnet's BatchNorm eps in its model_args


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DDP wrappers, whose state_dict keys are clean."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(path: Path, model: nn.Module, config: dict[str, Any], classes: list[str],
                    normalization: tuple[Sequence[float], Sequence[float]], **extra: Any) -> None:
    """Write atomically (temporary file, then rename): a crash never leaves a half-written file."""
    mean, std = normalization
    state = {
        "format": FORMAT, "version": VERSION,
        "model": config["model"], "model_args": config.get("model_args", {}),
        "num_classes": len(classes), "classes": list(classes),
        "mean": list(mean), "std": list(std),
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        **extra,
    }
    with publishing(path, CheckpointError) as tmp:
        torch.save(state, tmp)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder (its best.pt, else last.pt)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p} holds no best.pt or last.pt; is it a cifarlab run folder?")
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; give a run folder or a .pt checkpoint")
    return p


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain data only, no code) and check its format."""
    p = resolve_checkpoint(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p} is not a readable checkpoint ({type(e).__name__}); it may "
                              "be truncated or not made by cifarlab") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a cifarlab checkpoint (no '{FORMAT}' marker)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{p} was written by a newer cifarlab (format version "
                              f"{state['version']}); upgrade cifarlab to read it")
    if isinstance(state.get("config"), dict) and state.get("version", 0) < VERSION:
        state["config"] = upgrade_config(state["config"])
        state["model_args"] = state["config"].get("model_args", state.get("model_args", {}))
    return state


def model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """The network a checkpoint describes, with its weights."""
    name = state["model"]
    try:
        check_model(name)
    except ValueError as e:
        raise CheckpointError(f"checkpoint needs model {name!r}, which cannot be built here: "
                              f"{e}") from None
    try:
        model = create_model(name, state["num_classes"], **state.get("model_args", {}))
    except ValueError as e:  # ModelError: arguments this model does not take
        raise CheckpointError(f"checkpoint cannot build its model: {e}") from None
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint weights do not fit model {name!r} with "
                              f"{state['num_classes']} classes: {first}") from None
    return model
