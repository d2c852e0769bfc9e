"""The one inference path: a network wrapped as a `Classifier` that takes float RGB in [0, 1],
normalises inside, applies test-time augmentation and returns float32 logits. Training's
validation and test, `evaluate`, `predict`, `report` and `export` all go through it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data.pixels import resize, to_float
from cifarlab.errors import CifarlabError
from cifarlab.runtime import autocast

TTA_CHOICES = ("none", "flip", "flip-translate")  # test-time augmentation: views averaged


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none", share: float = 1.0
               ) -> torch.Tensor:
    """Logits averaged over test-time views: the image and its mirror (flip), and for
    flip-translate also both shifted one pixel up-left and down-right (reflect-padded).

    With `share` < 1 only that share of the batch, the images the plain view is least sure
    of (lowest top softmax probability), gets the other views; the rest keep the plain
    view's logits (the selective TTA of hiverge/cifar10-speedrun: most images are already
    decided by one view, so a fraction of the views keeps nearly all of TTA's gain).
    """
    base = model(x).float()
    if tta == "none":
        return base
    if share >= 1:
        return _views(model, x, tta, base)
    out = base.clone()
    k = math.ceil(share * len(x))
    if k:
        unsure = base.softmax(1).amax(1).topk(k, largest=False).indices
        out[unsure] = _views(model, x[unsure], tta, base[unsure])
    return out


def _views(model: nn.Module, x: torch.Tensor, tta: str, base: torch.Tensor) -> torch.Tensor:
    """`tta`'s average, given the plain view's logits `base`."""
    logits = 0.5 * (base + model(x.flip(3)).float())
    if tta == "flip-translate":
        padded = F.pad(x, (1,) * 4, mode="reflect")
        h, w = x.shape[2:]
        shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
        logits = 0.5 * logits + 0.25 * sum(tta_logits(model, s, "flip") for s in shifted)
    return logits


class Classifier(nn.Module):
    """Pixels in [0, 1], shape (N, 3, H, W) -> float32 logits (N, classes).

    `net` is the trained network; mean/std are buffers; `tta` is the test-time augmentation,
    given to the least sure `tta_share` of each batch (`tta_logits`); `classes` the class
    names; `config` the run's settings (a `cifarlab.Config`), when it comes from a run. Images
    of another size than `image_size` are resized to it (antialiased bilinear, as training
    did). `amp` (an autocast dtype) and `channels_last` run the network as training evaluated
    it; both off (float32), the module exports as it is. `temperature` (fitted by `cifarlab
    evaluate --calibrate`) divides the logits: the same predictions, calibrated probabilities.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str], *, tta: str = "none", tta_share: float = 1.0,
                 amp: torch.dtype | None = None, channels_last: bool = False,
                 image_size: int = 32, config: Any = None, temperature: float | None = None):
        super().__init__()
        if tta not in TTA_CHOICES:
            raise ValueError(f"tta must be one of {', '.join(TTA_CHOICES)}, not {tta!r}")
        if not 0 <= tta_share <= 1:
            raise ValueError(f"tta_share must be in [0, 1], not {tta_share}")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        self.net = net
        self.tta = tta
        self.tta_share = tta_share
        self.classes = list(classes)
        self.temperature = temperature
        self.amp = amp
        self.channels_last = channels_last
        self.image_size = image_size
        self.config = config
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize(x, self.image_size)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp is None:
            logits = tta_logits(self.net, x, self.tta, self.tta_share)
        else:
            with autocast(x.device, self.amp):
                logits = tta_logits(self.net, x, self.tta, self.tta_share)
        return logits if self.temperature is None else logits / self.temperature


@torch.inference_mode()
def predict_logits(model: Classifier, images: torch.Tensor, batch_size: int = 1000
                   ) -> torch.Tensor:
    """Float32 logits of uint8 images (N, 3, 32, 32) in batches, on the model's device."""
    device = model.mean.device
    was_training = model.training
    model.eval()
    try:
        out = [model(to_float(images[start:start + batch_size].to(device)))
               for start in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    logits = torch.cat(out) if out else torch.empty(0, len(model.classes), device=device)
    bad = int((~torch.isfinite(logits).all(dim=1)).sum())  # never a figure made of NaN
    if bad:
        raise CifarlabError(f"the model's outputs are not numbers (NaN or infinite) for {bad} "
                            f"of {len(logits)} images: its weights are broken (a run that "
                            "diverged); train it again with a lower --lr")
    return logits
