"""The model package: a folder that stands on its own, in the layout of a Hugging Face model
repository (and of timm's hub models), written by `cifarlab export --format package`:

    model.safetensors   the weights (the run's chosen ones), read without unpickling
    config.json         timm's fields (architecture, num_classes, label_names, pretrained_cfg)
                        and under "cifarlab" everything needed to rebuild and use the model:
                        model name and arguments, classes, normalisation, input size, TTA,
                        temperature, the run's settings, where the weights come from and
                        their digest (weights_sha256: a changed bit is refused when read)
    README.md           the model card (front matter, test figures, recipe, limitations)
    metrics.json        the run's test result, as the run folder has it

This module owns these names; reading a package gives the same `Checkpoint` a run gives."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from cifarlab.errors import CheckpointError, ConfigError, first_line
from cifarlab.files import publish_text, publishing, read_json_object
from cifarlab.runs.checkpoint import FITTED, Checkpoint, weights_digest
from cifarlab.runs.config import Config

FORMAT = "cifarlab-package"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
METRICS = "metrics.json"
PACKAGE_FILES = (WEIGHTS, CONFIG, CARD, METRICS)


def is_package(path: str | os.PathLike) -> bool:
    """A folder with a package's weights and config.json (a run folder has neither the one
    nor, in its config.json, the package marker)."""
    p = Path(path)
    return p.is_dir() and (p / WEIGHTS).is_file() and (p / CONFIG).is_file()


def write_package(path: str | os.PathLike, *, weights: dict[str, torch.Tensor],
                  config: dict[str, Any], card: str, metrics: dict[str, Any] | None) -> Path:
    """Write (or replace) the package folder whole or not at all: its files go to a folder
    beside it, renamed into place once all are written (a stop or a full disk leaves the
    previous package, or none). `config` is config.json's content; its "cifarlab" section
    gets the format marker and the weights' digest."""
    from safetensors.torch import save_file

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out} is a file; give a folder for the package")
    if out.is_dir() and any(out.iterdir()) and not is_package(out):
        raise CheckpointError(f"{out} is a non-empty folder that is not a model package; "
                              "give a new or empty folder")
    # safetensors refuses tensors that share memory or are not contiguous: store copies
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    config = {**config, "cifarlab": {"format": FORMAT, "version": VERSION,
                                     **config["cifarlab"],
                                     "weights_sha256": weights_digest(plain)}}
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        try:
            staging.mkdir(parents=True)
        except OSError as e:
            raise CheckpointError(f"cannot write the package {out}: {e.strerror}") from None
        with publishing(staging / WEIGHTS, CheckpointError) as tmp:
            save_file(plain, str(tmp), metadata={"format": "pt", "producer": FORMAT})
        umask = os.umask(0)
        os.umask(umask)
        for f in staging.iterdir():
            os.chmod(f, 0o666 & ~umask)  # readable as any file the user writes, to share
        publish_text(staging / CONFIG, json.dumps(config, indent=2) + "\n")
        publish_text(staging / CARD, card)
        if metrics is not None:
            publish_text(staging / METRICS, json.dumps(metrics, indent=2) + "\n")
        _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _replace_folder(new: Path, out: Path) -> None:
    """`new` renamed to `out`; a previous package there is moved aside first, then removed."""
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    try:
        if out.is_dir() and any(out.iterdir()):
            os.replace(out, old)
        os.replace(new, out)  # onto a missing or empty folder
    except OSError as e:
        if old.exists() and not out.exists():
            os.replace(old, out)  # the previous package back
        raise CheckpointError(f"cannot write the package {out}: {e.strerror}") from None
    shutil.rmtree(old, ignore_errors=True)


def package_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json's cifarlab section, checked."""
    p = Path(path) / CONFIG
    own = (read_json_object(p, CheckpointError) or {}).get("cifarlab")
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a cifarlab model package's (no '{FORMAT}' marker)")
    if not isinstance(own.get("version", 0), int):
        raise CheckpointError(f"{p} is damaged (its version is not a number)")
    if own.get("version", 0) > VERSION:
        raise CheckpointError(f"{p} was written by a newer cifarlab (package version "
                              f"{own['version']}); upgrade cifarlab to read it")
    classes = own.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{p} has no class list")
    return own


def package_settings(path: str | os.PathLike) -> Config:
    """The settings of the run the package was made from."""
    try:
        return Config.from_dict(package_config(path).get("settings") or {})
    except ConfigError as e:
        raise CheckpointError(f"{Path(path) / CONFIG}: its settings cannot be used here: {e}"
                              ) from None


def read_package(path: str | os.PathLike) -> Checkpoint:
    """The package as a `Checkpoint` (weights, settings, classes, temperature)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    own = package_config(p)
    config = package_settings(p)
    try:
        weights = load_file(str(p / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        first = first_line(e)
        raise CheckpointError(f"{p / WEIGHTS} is not a readable safetensors file ({first}); "
                              "it may be truncated: export the package again") from None
    recorded = own.get("weights_sha256")  # packages before it have none
    if recorded is not None and recorded != weights_digest(weights):
        raise CheckpointError(f"{p / WEIGHTS} is damaged: its weights do not match the digest "
                              f"in {CONFIG} (a changed or corrupted file); export the package "
                              "again")
    temperature = own.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float))
                                        and temperature > 0):
        raise CheckpointError(f"{p / CONFIG}: temperature must be a positive number")
    fitted = own.get("temperature_from", FITTED) == FITTED  # else the settings carry it
    return Checkpoint(p / WEIGHTS, config, list(own["classes"]), weights, own.get("epoch"),
                      own.get("val_acc"), temperature=temperature if fitted else None)


def package_metrics(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run's test result carried in the package (None: none)."""
    return read_json_object(Path(path) / METRICS, CheckpointError)
