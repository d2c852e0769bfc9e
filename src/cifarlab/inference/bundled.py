"""Trained CIFAR-10 models that come with the package: model packages (runs/package.py) made by
cifarlab's own presets on the real data, in the package's `trained/` folder, read through
importlib.resources. Each is used by its name wherever a run folder or package is taken:
`cifarlab.load_model("cifar10-94")`, `cifarlab predict cifar10-94 photo.jpg`, `cifarlab demo
cifar10-94`; `predict` and `demo` without one use the best. How each was made, and its
figures, are in its model card (`trained/NAME/README.md`) and in docs/benchmarks.md."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from cifarlab.runs.package import WEIGHTS, is_package, package_metrics

# The bundled models, best first; `predict` and `demo` without a model use the first.
NAMES = ("cifar10-94", "cifar10-fast")


def bundled_path(name: str) -> Path:
    """The folder of bundled model `name`."""
    folder = resources.files("cifarlab") / "trained" / name
    return Path(os.fspath(folder))  # an installed package's folder on disk


def bundled_name(source: str | os.PathLike) -> str | None:
    """`source` as a bundled model's name, when it names one and no file or folder of that
    name is here (a local run folder called cifar10-94 wins)."""
    name = os.fspath(source)
    return name if name in NAMES and not Path(name).exists() else None


def best_bundled() -> dict[str, Any]:
    """The best bundled model that is installed: its `bundled_models` entry."""
    models = bundled_models()
    if not models:
        raise FileNotFoundError("no bundled model is installed")
    return models[0]


def bundled_models() -> list[dict[str, Any]]:
    """Each installed bundled model: name, preset, test top-1 and ECE (percent), weights size
    in MB."""
    out = []
    for name in NAMES:
        path = bundled_path(name)
        if not is_package(path):
            continue
        m = package_metrics(path) or {}
        out.append({"name": name, "path": str(path), "preset": m.get("preset"),
                    "test_top1": m.get("test_top1"), "test_ece": m.get("test_ece"),
                    "megabytes": (path / WEIGHTS).stat().st_size / 1e6})
    return out
