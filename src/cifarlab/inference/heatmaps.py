"""Heatmaps of what a prediction looked at: Grad-CAM (Selvaraju et al., 2017) through captum's
`LayerGradCam`, on the last convolutional stage by default, for cifarlab's networks and any
torchvision or timm model; and the heatmap drawn over the image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cifarlab.data.pixels import to_float
from cifarlab.errors import CifarlabError
from cifarlab.inference.features import last_spatial_layer, named_layer, plain_view
from cifarlab.models import Classifier


def grad_cam(model: Classifier, images: torch.Tensor, targets: torch.Tensor | None = None, *,
             layer: str | None = None, batch_size: int = 256) -> tuple[torch.Tensor, str]:
    """(heatmaps (N, H, W) in [0, 1] at the images' size, the layer's name) for uint8 images
    (N, 3, H, W) and the classes to explain (default: the predicted ones). Computed in
    float32 on the plain view (no test-time augmentation)."""
    try:
        from captum.attr import LayerAttribution, LayerGradCam
    except ImportError:
        raise CifarlabError("heatmaps need captum (a dependency of cifarlab): "
                            "pip install captum") from None
    name, module = (layer, named_layer(model.net, layer)) if layer else last_spatial_layer(model)
    plain = plain_view(model, float32=True)
    cam = LayerGradCam(plain, module)
    maps = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(model.mean.device))
        if targets is None:
            with torch.no_grad():  # not inference_mode: captum's backward indexes by it
                target = plain(x).argmax(1)
        else:
            target = targets[start:start + batch_size].to(x.device)
        raw = cam.attribute(x, target=target, relu_attributions=True)
        if raw.dim() != 4:
            raise CifarlabError(f"layer {name!r} gives no feature map (its output has shape "
                                f"{tuple(raw.shape)}); choose a convolutional layer")
        up = LayerAttribution.interpolate(raw.detach().float(), tuple(x.shape[2:]), "bilinear")
        maps.append(normalise(up[:, 0]).cpu())
    return (torch.cat(maps) if maps else torch.empty(0, *images.shape[2:])), name


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] (a map of zeros stays zeros)."""
    low = maps.amin((1, 2), keepdim=True)
    span = (maps.amax((1, 2), keepdim=True) - low).clamp(min=1e-12)
    return (maps - low) / span


def overlay(image: np.ndarray, heat: np.ndarray, size: int = 128, alpha: float = 0.45
            ) -> np.ndarray:
    """An uint8 (size, size, 3) picture: the image (uint8 HWC) enlarged, the heatmap (H, W in
    [0, 1]) over it in the 'jet' colours."""
    from matplotlib import colormaps

    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[0]
    hm = F.interpolate(torch.as_tensor(heat, dtype=torch.float32)[None, None],
                       size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    colour = torch.from_numpy(colormaps["jet"](hm.clamp(0, 1).numpy())[..., :3] * 255)
    mixed = (1 - alpha) * img.permute(1, 2, 0) + alpha * colour.float()
    return mixed.clamp(0, 255).round().to(torch.uint8).numpy()


def explain_results(model: Classifier, results: list[dict[str, Any]], out: Path, *,
                    layer: str | None = None) -> str:
    """For each classified file of `results` (`classify_files(..., keep_pixels=True)`), its
    heatmap for the top class over the image, as OUT/<name>.heatmap.png; each result gets
    "heatmap" (the path). Returns the layer's name."""
    from PIL import Image

    good = [r for r in results if "top" in r]
    if not good:
        return layer or ""
    classes = {c: i for i, c in enumerate(model.classes)}
    targets = torch.tensor([classes[r["top"][0]["class"]] for r in good])
    pixels = torch.from_numpy(np.stack([r["pixels"] for r in good]))
    maps, name = grad_cam(model, pixels, targets, layer=layer)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for r, heat in zip(good, maps, strict=True):
        stem = Path(r["file"]).stem
        target = stem if stem not in taken else f"{stem}-{len(taken)}"
        taken.add(target)
        r["heatmap"] = str(out / f"{target}.heatmap.png")
        Image.fromarray(overlay(r["pixels"].transpose(1, 2, 0), heat.numpy())).save(r["heatmap"])
    return name
