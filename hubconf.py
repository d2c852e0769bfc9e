"""torch.hub entry points: the trained CIFAR-10 models that come with cifarlab.

    model = torch.hub.load("OWNER/cifarlab", "cifar10_94")     # from GitHub
    model = torch.hub.load("path/to/cifarlab", "cifar10_94", source="local")

Each returns the model as `cifarlab.load_model` does: a `cifarlab.Classifier` in eval mode,
float RGB in [0, 1] of shape (N, 3, H, W) in (resized inside), calibrated logits out,
`.classes` naming them. `torch.hub.list(...)` lists the entry points.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "safetensors", "numpy", "PIL"]

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))  # the repository's own cifarlab, not an installed one


def _load(name: str, device: str):
    import cifarlab

    return cifarlab.load_model(name, device)


def cifar10_94(device: str = "cpu"):
    """The `94` preset's network (fastnet 64/256/256) trained on CIFAR-10, seed 0: its test
    accuracy, calibration and the command that made it are in its model card
    (src/cifarlab/trained/cifar10-94/README.md)."""
    return _load("cifar10-94", device)


def cifar10_fast(device: str = "cpu"):
    """The default `fast` preset's network (fastnet 32/64/128) trained on CIFAR-10, seed 0:
    small and quick (src/cifarlab/trained/cifar10-fast/README.md)."""
    return _load("cifar10-fast", device)
