"""Inside a trained network: the embedding its classifier layer reads (for finding
near-copies) and its last spatial feature map (for heatmaps), found by watching a forward pass,
so that they work for cifarlab's networks and any torchvision or timm model alike."""

from __future__ import annotations

import torch
from torch import nn

from cifarlab.data.pixels import to_float
from cifarlab.errors import CifarlabError
from cifarlab.models import Classifier


def plain_view(model: Classifier, float32: bool = False) -> Classifier:
    """The same network and normalisation with one view and no temperature, what the inside
    of the network is read from: in the model's precision and memory format, or `float32`."""
    return Classifier(model.net, model.mean.flatten().tolist(), model.std.flatten().tolist(),
                      model.classes, amp=None if float32 else model.amp,
                      channels_last=not float32 and model.channels_last,
                      image_size=model.image_size).to(model.mean.device).eval()


def classifier_layer(net: nn.Module) -> nn.Linear:
    """The network's last linear layer: the one that turns the embedding into logits."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise CifarlabError(f"{type(net).__name__} has no linear classifier layer to read the "
                            "embedding from")
    return linears[-1]


@torch.inference_mode()
def embed(model: Classifier, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(N, D) embeddings of uint8 images: the classifier layer's input for the plain view
    (a network trained with flips embeds a mirrored copy close by), on the CPU."""
    seen: list[torch.Tensor] = []
    hook = classifier_layer(model.net).register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].float().flatten(1)))
    plain = plain_view(model)
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size].to(model.mean.device))
            seen.clear()
            plain(x)
            out.append(seen[0].cpu())
    finally:
        hook.remove()
    return torch.cat(out) if out else torch.empty(0, 0)


def named_layer(net: nn.Module, name: str) -> nn.Module:
    """The module called `name` (as `net.named_modules()` gives it), or a clear error."""
    modules = dict(net.named_modules())
    if name not in modules:
        spatial = ", ".join(list(modules)[-6:])
        raise CifarlabError(f"the network has no layer {name!r}; the last ones are: {spatial}")
    return modules[name]


def last_spatial_layer(model: Classifier) -> tuple[str, nn.Module]:
    """(name, module) of the last module whose output is a feature map larger than 1x1: the
    end of the last convolutional stage, Grad-CAM's usual layer."""
    names = {m: n for n, m in model.net.named_modules()}
    found: list[nn.Module] = []

    def watch(module: nn.Module, _args: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
            found.append(module)

    hooks = [m.register_forward_hook(watch) for m in model.net.modules() if m is not model.net]
    try:
        with torch.inference_mode():
            size = model.image_size
            model(torch.zeros(1, 3, size, size, device=model.mean.device))
    finally:
        for h in hooks:
            h.remove()
    if not found:
        raise CifarlabError("the network has no spatial feature map to draw a heatmap from")
    return names[found[-1]], found[-1]
