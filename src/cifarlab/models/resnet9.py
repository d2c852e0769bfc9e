"""ResNet-9 (the DAWNBench CIFAR-10 winner's network): a fast residual alternative to fastnet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cifarlab.models.registry import register_model


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
              nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, num_classes: int, widths: Sequence[int], logit_scale: float):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.body = nn.Sequential(
            conv_bn(3, w0),
            conv_bn(w0, w1, pool=True), Residual(w1),  # 32 -> 16
            conv_bn(w1, w2, pool=True),  # 16 -> 8
            conv_bn(w2, w3, pool=True), Residual(w3),  # 8 -> 4
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)) * self.logit_scale


@register_model("resnet9")
def resnet9(num_classes: int = 10, widths: Sequence[int] = (64, 128, 256, 512),
            logit_scale: float = 0.125) -> nn.Module:
    """ResNet-9: prep conv, three pooling stages, residual blocks after the 1st and 3rd (6.6M)."""
    return ResNet9(num_classes, tuple(widths), logit_scale)
