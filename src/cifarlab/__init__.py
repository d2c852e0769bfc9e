"""cifarlab: train, evaluate and use image classifiers on CIFAR-10 and CIFAR-100.

The public functions live in modules of other names (training, evaluation, inference), so no
module is hidden behind a function of the same name.
"""

import os

# Apple GPUs (mps): an operation Metal lacks runs on the CPU instead of failing the run. torch
# reads this once, when it is first imported, so it is set before anything imports torch.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

# ruff: noqa: E402

from cifarlab.config import PRESETS, Config, make_config
from cifarlab.evaluation import evaluate
from cifarlab.inference import Classifier, load_model
from cifarlab.models import create_model, list_models
from cifarlab.training import resume, train
from cifarlab.version import __version__

__all__ = ["Classifier", "Config", "PRESETS", "create_model", "evaluate", "list_models",
           "load_model", "make_config", "resume", "train", "__version__"]
