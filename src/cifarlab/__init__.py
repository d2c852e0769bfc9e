"""cifarlab: train, evaluate and use image classifiers on CIFAR-10 and CIFAR-100.

The package follows the data path, one subpackage per stage, each importing only the ones
before it: data -> models -> runs (settings and run folders) -> training -> inference (using
a trained model) -> reporting -> jobs (train, tune, bench) -> cli. docs/architecture.md has
the map. The public functions live in modules of other names, so no module is hidden behind a
function of the same name.
"""

import os

# Apple GPUs (mps): an operation Metal lacks runs on the CPU instead of failing the run. torch
# reads this once, when it is first imported, so it is set before anything imports torch.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

# ruff: noqa: E402

from cifarlab.inference import evaluate, load_model
from cifarlab.jobs.training_run import resume, train
from cifarlab.models import Classifier, create_model, list_models
from cifarlab.runs import PRESETS, Config, make_config
from cifarlab.training import Hook
from cifarlab.version import __version__

__all__ = ["Classifier", "Config", "Hook", "PRESETS", "create_model", "evaluate",
           "list_models", "load_model", "make_config", "resume", "train", "__version__"]
