"""Batched data augmentation on the training device, random per sample.

Every function takes float images (B, 3, H, W) in [0, 1] and a `torch.Generator` on the same
device, so a seeded run draws the same augmentations. One call transforms the whole batch: the
per-image PIL pipeline of torchvision transforms is what made the teaching script slow on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cifarlab.data.pixels import normalize, per_channel, to_float
from cifarlab.runtime import host_reads_are_free

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator,
                mode: str = "zeros") -> torch.Tensor:
    """Pad by `padding` (zeros or reflection), then cut a random HxW window per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="constant" if mode == "zeros" else mode)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=g, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=g, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # (B,H,W,C) -> NCHW


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose mask entry is True."""
    return torch.where(_per_sample(mask), x.flip(3), x)


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    return flip_where(x, torch.rand(x.shape[0], generator=g, device=x.device) < 0.5)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle (counter-clockwise), bilinear, zeros outside."""
    a = degrees * (math.pi / 180)
    cos = torch.cos(a)
    sin = torch.sin(a)
    zero = torch.zeros_like(a)
    # affine_grid maps output to input coordinates with y pointing down, hence the signs.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotation(x: torch.Tensor, max_degrees: float, g: torch.Generator) -> torch.Tensor:
    return rotate(x, _uniform(x.shape[0], -max_degrees, max_degrees, g, x.device))


def grayscale(x: torch.Tensor) -> torch.Tensor:
    r, gr, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * gr + _GRAY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (other + _per_sample(factor) * (x - other)).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x), factor)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-8), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc = (maxc - r) / d
    gc = (maxc - g) / d
    bc = (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2 + rc - bc, 4 + gc - rc))
    h = torch.where(delta > 0, (h / 6) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6)
    f = h * 6 - i
    i = i.long() % 6
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # Each of the six hue sectors takes (r, g, b) from a different arrangement of v, p, q, t.
    table = torch.stack([torch.stack(c, 1) for c in
                         [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 1)
    return table.gather(1, i[:, None, None].expand(-1, 1, 3, *i.shape[1:])).squeeze(1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by `shift` turns (in [-0.5, 0.5]) per image."""
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(hsv)


def color_jitter(x: torch.Tensor, jitter: Sequence[float], g: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue per image, in a random order per batch."""
    brightness, contrast, saturation, hue = jitter
    n = x.shape[0]
    dev = x.device
    ops = []
    for amount, fn in ((brightness, adjust_brightness), (contrast, adjust_contrast),
                       (saturation, adjust_saturation)):
        if amount > 0:
            ops.append((fn, _uniform(n, max(0.0, 1 - amount), 1 + amount, g, dev)))
    if hue > 0:
        ops.append((adjust_hue, _uniform(n, -hue, hue, g, dev)))
    order = torch.randperm(len(ops), generator=g, device=dev)
    if host_reads_are_free(dev):
        for k in order.tolist():
            fn, factor = ops[k]
            x = fn(x, factor)
        return x
    # Elsewhere reading the order would stall the device: every operation at every place,
    # kept where it was drawn (the same result, a few more cheap passes).
    for place in range(len(ops)):
        for k, (fn, factor) in enumerate(ops):
            x = torch.where(order[place] == k, fn(x, factor), x)
    return x


def cutout(x: torch.Tensor, size: int, g: torch.Generator, fill: torch.Tensor) -> torch.Tensor:
    """Paint a size x size square (clipped at the border) at a random centre of each image."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), generator=g, device=x.device)
    cx = torch.randint(0, w, (b, 1), generator=g, device=x.device)
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_y = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)  # (B, H)
    in_x = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)  # (B, W)
    mask = (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)
    return torch.where(mask, fill.view(1, -1, 1, 1).to(x.dtype), x)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Blend each image with a partner from the same batch: returns x, y_a, y_b, lambda."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())  # uses torch's global RNG
    perm = torch.randperm(x.shape[0], generator=g, device=x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


@dataclass(frozen=True)
class Augmenter:
    """A training augmentation: uint8 batch in, augmented and normalised float out. Each step
    is off at its zero value; the draws come from the generator passed with each batch."""

    mean: Sequence[float]
    std: Sequence[float]
    crop_padding: int = 0
    crop_mode: str = "zeros"
    flip: bool = False
    rotation: float = 0.0
    color_jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    cutout: int = 0

    def __call__(self, images: torch.Tensor, g: torch.Generator,
                 flip_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`flip_mask` (bool per image) replaces the random flip, for alternating flips."""
        x = to_float(images)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, g, self.crop_mode)
        if flip_mask is not None:
            x = flip_where(x, flip_mask)
        elif self.flip:
            x = random_flip(x, g)
        if self.rotation:
            x = random_rotation(x, self.rotation, g)
        if any(self.color_jitter):
            x = color_jitter(x, self.color_jitter, g)
        if self.cutout:
            # Filled with the mean colour, i.e. zeros once normalised (as DeVries & Taylor).
            x = cutout(x, self.cutout, g, per_channel(self.mean, x.device, x.dtype))
        return normalize(x, self.mean, self.std)
