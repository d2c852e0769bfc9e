"""FastNet: the speed-record family (airbench-style) of conv-BN-GELU groups with max-pooling.

A 2x2 "whitening" convolution first (initialised from the training images, see
`init_from_data`), then three groups that each halve the resolution (31 -> 15 -> 7 -> 3), a
global max-pool and a linear layer with scaled-down logits. Convolutions start as identities
(Dirac init), which lets the deep path train from the first step.

As in airbench94: the whitening uses the uncentred second moment of the patches, its bias
trains only early in the run (`early_parameters`, see Config.whiten_bias_share), and BatchNorm's
eps is 1e-12 (its scale is fixed at 1, so eps only guards against a zero variance).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cifarlab.models.registry import register_model

ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


class ConvGroup(nn.Sequential):
    """conv -> max-pool -> BN -> act -> conv -> BN -> act (pooling early saves 3/4 of a conv)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float = 0.1, bn_eps: float = 1e-12,
                 activation: str = "gelu"):
        act = ACTIVATIONS[activation]
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(c_out, eps=bn_eps, momentum=bn_momentum), act(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, eps=bn_eps, momentum=bn_momentum), act(),
        )
        for m in self:
            if isinstance(m, nn.Conv2d):  # identity on the first c_in channels
                nn.init.dirac_(m.weight.data[: m.in_channels])
            if isinstance(m, nn.BatchNorm2d):  # scale fixed at 1, only the shift is learnt
                m.weight.requires_grad_(False)


class FastNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (32, 64, 128),
                 whiten_width: int = 24, logit_scale: float = 1 / 9, bn_momentum: float = 0.1,
                 bn_eps: float = 1e-12, activation: str = "gelu"):
        super().__init__()
        if whiten_width % 2:
            raise ValueError("whiten_width must be even (filters come in +/- pairs)")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not "
                             f"{activation!r}")
        # 2x2 patches, no padding: 32x32 -> 31x31. Weights are set by init_from_data and frozen.
        self.whiten = nn.Conv2d(3, whiten_width, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        chans = [whiten_width, *widths]
        self.groups = nn.Sequential(*(ConvGroup(c_in, c_out, bn_momentum, bn_eps, activation)
                                      for c_in, c_out in zip(chans, chans[1:], strict=False)))
        self.head = nn.Linear(chans[-1], num_classes, bias=False)
        # Small logits at the start let the net train at a high learning rate.
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the first layer to whiten 2x2 patches of `images` (normalised float, NCHW).

        Its filters are the eigenvectors of the patches' second moment (uncentred, as in
        airbench) scaled by 1/sqrt(eigenvalue), each with its negation, so that after GELU both
        signs of every component survive.
        """
        c = images.shape[1]
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N, C, 31, 31, 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4)
        cov = patches.T @ patches / len(patches)
        # A one-off 12x12 eigendecomposition, on the CPU in float64 (Apple's MPS has no
        # float64); the filters then go to the layer's device.
        eigvals, eigvecs = torch.linalg.eigh(cov.to("cpu", torch.float64))
        k = self.whiten.out_channels // 2
        order = eigvals.argsort(descending=True)[:k]  # the strongest components first
        w = (eigvecs[:, order] / torch.sqrt(eigvals[order] + eps)).T.float()
        w = w.reshape(k, c, 2, 2)
        self.whiten.weight.copy_(torch.cat([w, -w]).to(self.whiten.weight))
        self.whiten.bias.zero_()

    def early_parameters(self) -> list[nn.Parameter]:
        """What trains only in the first share of the run: the whitening bias."""
        return [self.whiten.bias]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.act(self.whiten(x)))
        # In float32: under torch.compile on the CPU (torch 2.14, inductor) a bf16 amax after
        # the fused BatchNorm-GELU gets NaN gradients; eager results are the same either way.
        x = torch.amax(x.float(), dim=(2, 3))
        return self.head(x) * self.logit_scale


@register_model("fastnet")
def fastnet(num_classes: int = 10, widths: Sequence[int] = (32, 64, 128), whiten_width: int = 24,
            bn_momentum: float = 0.1, bn_eps: float = 1e-12, activation: str = "gelu"
            ) -> nn.Module:
    """Speed-record style net: whitening 2x2 conv, three conv-BN-GELU pooling groups (32/64/128);
    `activation` in the groups: gelu, silu or relu (the first, after the whitening, stays GELU)."""
    return FastNet(num_classes, widths=tuple(widths), whiten_width=whiten_width,
                   bn_momentum=bn_momentum, bn_eps=bn_eps, activation=activation)
