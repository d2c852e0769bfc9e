"""Trained models loaded from a run folder or a checkpoint file, as the `Classifier` every use
of a model goes through."""

from __future__ import annotations

import os

import torch
from torch import nn

from cifarlab.errors import CheckpointError, first_line
from cifarlab.inference.hub import resolve_source
from cifarlab.models import Classifier, create_model
from cifarlab.runs import Checkpoint, open_checkpoint
from cifarlab.runtime import amp_dtype, use_channels_last


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """The network a checkpoint describes, with its weights."""
    cfg = ckpt.config
    try:
        model = create_model(cfg.model, len(ckpt.classes), **cfg.model_args)
    except ValueError as e:  # ModelError: arguments this model does not take
        raise CheckpointError(f"{ckpt.path} cannot build its model: {e}") from None
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.path}: its weights do not fit model {cfg.model!r} with "
                              f"{len(ckpt.classes)} classes: {first_line(e)}") from None
    return model


def load_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu", *,
               tta: str | None = None, as_trained: bool = False, tta_share: float | None = None,
               calibrated: bool = True) -> Classifier:
    """The trained classifier of a run folder, checkpoint file, model package folder,
    `hf-hub:ORG/NAME` package or bundled model (`cifar10-94`, `cifar10-fast`), in eval mode:
    float RGB in [0, 1] in, logits out; `.classes` names the outputs, `.config` holds the
    run's settings (a `cifarlab.Config`).
    `calibrated` divides the logits by their temperature (`Checkpoint.calibration`): the one
    fitted on the run's validation split, else its preset's; False gives the plain logits.

    `tta` and `tta_share` default to the run's own. `as_trained` runs it in the run's
    precision and memory format (bf16, channels-last) as training evaluated it; by default
    it computes in float32, as exported.
    """
    ckpt = open_checkpoint(resolve_source(checkpoint))
    cfg = ckpt.config
    device = torch.device(device)
    net = model_from_checkpoint(ckpt)
    amp = None
    channels_last = False
    if as_trained:
        amp = amp_dtype(cfg.amp, device)
        channels_last = use_channels_last(cfg.channels_last,
                                                                           device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
    model = Classifier(net, cfg.mean, cfg.std, ckpt.classes, tta=tta or cfg.tta,
                       tta_share=cfg.tta_share if tta_share is None else tta_share, amp=amp,
                       channels_last=channels_last, config=cfg, image_size=cfg.image_size,
                       temperature=ckpt.calibration()[0] if calibrated else None)
    return model.to(device).eval()
