"""Pixels as networks take them: uint8 to float in [0, 1], normalised per channel, resized.
Training's augmentation and every inference path use these same three steps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; a new tensor, the caller's is left alone."""
    return images.div(255).to(torch.float32)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch of images (N, C, H, W) at size x size: antialiased bilinear, a no-op when it
    is already that size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
