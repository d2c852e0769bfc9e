"""cifarlab: train, evaluate and use image classifiers on CIFAR-10 and CIFAR-100."""

__version__ = "0.1.0"

from cifarlab.checkpoint import load_model  # noqa: E402
from cifarlab.config import PRESETS, Config, make_config  # noqa: E402
from cifarlab.evaluate import evaluate  # noqa: E402
from cifarlab.models import create_model, list_models  # noqa: E402
from cifarlab.runs import resume  # noqa: E402
from cifarlab.train import train  # noqa: E402

__all__ = ["Config", "PRESETS", "create_model", "evaluate", "list_models", "load_model",
           "make_config", "resume", "train", "__version__"]
