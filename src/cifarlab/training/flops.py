"""The arithmetic a training run does: its network's forward and backward FLOPs per image at
each image size it trains at (torch.utils.flop_counter, which counts matrix products and
convolutions: normalisation, activations and the optimizer are left out), times the images it
sees at that size. `cifarlab bench` divides it by the training time (achieved FLOP/s) and by the
machine's measured bf16 matrix-product rate (utilisation)."""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils.flop_counter import FlopCounterMode

from cifarlab.models import create_model
from cifarlab.runs import Config
from cifarlab.training.optim import early_parameters
from cifarlab.training.trainer import steps_per_epoch

_PROBE_BATCH = 4  # FLOPs grow linearly with the batch; a few images give the per-image count


def flops_per_image(cfg: Config, num_classes: int, size: int) -> float:
    """Forward and backward FLOPs of one training image at `size` pixels, in the steady state
    (what trains only early, such as fastnet's whitening bias, frozen: most steps)."""
    torch.manual_seed(0)
    model = create_model(cfg.model, num_classes, **cfg.model_args)
    model.train()
    for p in early_parameters(model, cfg):
        p.requires_grad_(False)
    x = torch.randn(_PROBE_BATCH, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).float().logsumexp(1).sum().backward()
    return counter.get_total_flops() / _PROBE_BATCH


def training_flops(cfg: Config, num_classes: int, train_images: int) -> dict[str, float]:
    """{"total": FLOPs of the whole run, "<size>px": FLOPs per image at each size it trains
    at}: every epoch's images (the last partial batch dropped, as training does) at that
    epoch's size."""
    images = steps_per_epoch(train_images, cfg.batch_size) * cfg.batch_size
    epochs_at = Counter(cfg.epoch_size(e) or cfg.image_size for e in range(1, cfg.epochs + 1))
    per_image = {size: flops_per_image(cfg, num_classes, size) for size in epochs_at}
    return {"total": sum(per_image[s] * n * images for s, n in epochs_at.items()),
            **{f"{s}px": f for s, f in per_image.items()}}
