"""FastNet: the speed-record family (airbench-style) of conv-BN-GELU groups with max-pooling.

Small enough to train to useful accuracy in minutes on a CPU. Each group halves the resolution
(32 -> 16 -> 8 -> 4), a global max-pool and a linear layer finish.
"""

from collections.abc import Sequence

import torch
from torch import nn

from cifarlab.models.registry import register_model


class ConvGroup(nn.Sequential):
    """conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU (pooling early saves 3/4 of a conv)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(c_out), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.GELU(),
        )


class FastNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (32, 64, 128),
                 stem_width: int = 24, logit_scale: float = 1 / 9):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem_width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.GELU())
        chans = [stem_width, *widths]
        self.groups = nn.Sequential(*(ConvGroup(c_in, c_out)
                                      for c_in, c_out in zip(chans, chans[1:], strict=False)))
        self.head = nn.Linear(chans[-1], num_classes, bias=False)
        # Scaled-down logits let the net start near uniform predictions and train with high lr.
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.stem(x))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.logit_scale


@register_model("fastnet")
def fastnet(num_classes: int = 10, widths: Sequence[int] = (32, 64, 128),
            stem_width: int = 24) -> nn.Module:
    """Speed-record style conv-BN-GELU net, three pooling groups (widths 32/64/128 by default)."""
    return FastNet(num_classes, widths=tuple(widths), stem_width=stem_width)
