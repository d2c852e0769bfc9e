"""Pixels as networks take them: uint8 to float in [0, 1], normalised per channel, resized.
Training's augmentation and every inference path use these same three steps."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; a new tensor, the caller's is left alone."""
    return images.div(255).to(torch.float32)


@functools.lru_cache(maxsize=64)
def _per_channel(values: tuple[float, ...], device: torch.device, dtype: torch.dtype
                 ) -> torch.Tensor:
    return torch.tensor(values, device=device, dtype=dtype).view(1, -1, 1, 1)


def per_channel(values: Sequence[float], device: torch.device, dtype: torch.dtype
                ) -> torch.Tensor:
    """Per-channel values as a (1, C, 1, 1) tensor on `device`, made once: a copy to a GPU in
    every step would stall it."""
    return _per_channel(tuple(map(float, values)), torch.device(device), dtype)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return (x - per_channel(mean, x.device, x.dtype)) / per_channel(std, x.device, x.dtype)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch of images (N, C, H, W) at size x size: antialiased bilinear, a no-op when it
    is already that size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
