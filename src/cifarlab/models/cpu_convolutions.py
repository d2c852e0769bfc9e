"""Convolutions as they run fastest on the CPU: without the kernel taps that only ever see
padding, and grouped (depthwise) ones in float32 under bf16 autocast.

Taps. An ImageNet network on 32-pixel images (torchvision's ResNet-18, as the teaching script trains
it) reaches 1x1 maps in its last stage: there a 3x3 convolution with padding 1 multiplies 8 of
its 9 taps by zeros. oneDNN's forward skips them, but its weight gradient does not
(docs/benchmarks.md, "Where the time went"). The same output comes from the taps that touch the
image, with the padding reduced to match: the same sums (up to the order of float additions),
so the same outputs and gradients (the skipped taps' gradients are zeros, as before).

Depthwise. oneDNN's bf16 backward of grouped convolutions is several times slower than its
float32 one on small or strided maps (MobileNet's and EfficientNet's depthwise layers;
docs/benchmarks.md, "Networks the docs name"), and those layers do little arithmetic: under CPU
autocast they run in float32, the dense convolutions around them stay in bf16.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache  # called for every convolution of every forward, with few distinct shapes
def used_taps(size: int, kernel: int, padding: int, stride: int) -> tuple[int, int, int]:
    """(first, last + 1) of the kernel taps that read some input pixel along one axis of
    `size` pixels, and the number of outputs along it."""
    outputs = (size + 2 * padding - kernel) // stride + 1
    taps = [t for t in range(kernel)
            if any(0 <= o * stride - padding + t < size for o in range(outputs))]
    return (taps[0], taps[-1] + 1, outputs) if taps else (0, kernel, outputs)


class CpuConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same state dict) that convolves with only the taps that see
    the input, when the kernel overhangs it on both sides, and in float32 when it is grouped and
    autocast would run it in bf16 (`cpu_convolutions`)."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.groups > 1 and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return self._trimmed(x.float(), weight.float(),
                                     None if bias is None else bias.float())
        return self._trimmed(x, weight, bias)

    def _trimmed(self, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
        if (self.padding_mode != "zeros" or isinstance(self.padding, str)
                or self.dilation != (1, 1)):
            return super()._conv_forward(x, weight, bias)
        window = []
        padding = []
        for size, kernel, pad, stride in zip(x.shape[-2:], self.kernel_size, self.padding,
                                             self.stride, strict=True):
            first, end, outputs = used_taps(size, kernel, pad, stride)
            new_kernel = end - first
            new_pad = pad - first
            # symmetric padding must still give as many outputs, or the trim is not exact
            if new_pad < 0 or (size + 2 * new_pad - new_kernel) // stride + 1 != outputs:
                first = 0
                end = kernel
                new_pad = pad
            window.append(slice(first, end))
            padding.append(new_pad)
        if all(w.stop - w.start == k for w, k in zip(window, self.kernel_size, strict=True)):
            return super()._conv_forward(x, weight, bias)  # every tap sees the input
        return F.conv2d(x, weight[:, :, window[0], window[1]], bias, self.stride,
                        tuple(padding), 1, self.groups)


def cpu_convolutions(model: nn.Module) -> nn.Module:
    """Make every plain nn.Conv2d of `model` a CpuConv2d, in place (parameters, hooks and
    state dict unchanged); returns the model."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = CpuConv2d
    return model
