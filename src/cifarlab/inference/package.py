"""`cifarlab export RUN --format package -o DIR`: a run (or a package) as a model package
folder that stands on its own (see cifarlab.runs.package for its files), in timm's hub layout
so that a timm run's package also loads in plain timm, and a torchvision run's weights in
plain torchvision."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.inference.export import input_spec
from cifarlab.inference.hub import resolve_source
from cifarlab.inference.loading import load_model, model_from_checkpoint
from cifarlab.inference.model_card import model_card
from cifarlab.models.external import parse_name
from cifarlab.runs import Checkpoint, RunFolder, open_checkpoint
from cifarlab.runs.package import is_package, package_metrics, write_package
from cifarlab.runs.values import WHERE_IT_RAN
from cifarlab.version import __version__

# what timm's own configuration says of the ImageNet weights, not of these
NOT_OURS = ("url", "hf_hub_id", "hf_hub_filename", "file", "state_dict", "source", "tag",
            "license", "origin_url", "paper_ids", "paper_name", "description", "notes",
            "test_input_size", "test_crop_pct", "test_pool_size", "min_input_size")


def library_of(model_name: str) -> str:
    """The library a package's front matter names: timm, pytorch (torchvision), or cifarlab."""
    source = (parse_name(model_name) or ("cifarlab", ""))[0]
    return {"timm": "timm", "tv": "pytorch"}.get(source, "cifarlab")


def hub_config(ckpt: Checkpoint, net: nn.Module, own: dict[str, Any]) -> dict[str, Any]:
    """config.json: timm's fields (the architecture, classes and a pretrained_cfg describing
    these weights), then cifarlab's section `own`."""
    cfg = ckpt.config
    size = own["image_size"]
    timm_cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    is_timm = library_of(cfg.model) == "timm"
    arch = timm_cfg.get("architecture") if is_timm else cfg.model
    pretrained_cfg = {k: v for k, v in timm_cfg.items() if k not in NOT_OURS}
    pretrained_cfg.update(input_size=[3, size, size], interpolation="bilinear", crop_pct=1.0,
                          crop_mode="center", mean=own["mean"], std=own["std"],
                          num_classes=own["num_classes"])
    out: dict[str, Any] = {"architecture": arch or cfg.model, "num_classes": own["num_classes"],
                           "label_names": own["classes"], "pretrained_cfg": pretrained_cfg}
    if is_timm:
        out["num_features"] = getattr(net, "num_features", None)
        out["model_args"] = dict(cfg.model_args)
    return {**out, "cifarlab": own}


def compact(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 conv and linear weights (two dimensions or more) in bfloat16, half their
    size; the rest (BatchNorm, biases: a few numbers each) as they are."""
    return {k: v.bfloat16() if v.dtype == torch.float32 and v.dim() >= 2 else v
            for k, v in weights.items()}


def export_package(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                   check: bool = True, bf16_weights: bool = False) -> dict[str, Any]:
    """Write the package of a run folder, checkpoint file or package to `out`; returns its
    path, config.json's cifarlab section and (with `check`) the largest logit difference
    between the package loaded back and the source, on random inputs (0: the same bits).
    `bf16_weights` stores the conv and linear weights in bfloat16 (`compact`). The settings
    leave out where the run was kept (its data and run folders), and `made_from` names the
    run folder and file only: the package tells nothing of the machine it was made on."""
    source = resolve_source(checkpoint)
    ckpt = open_checkpoint(source)
    cfg = ckpt.config
    net = model_from_checkpoint(ckpt)
    temperature, temperature_from = ckpt.calibration()
    src = Path(source)
    folder = src if src.is_dir() else src.parent
    metrics = (package_metrics(folder) if is_package(folder)
               else RunFolder(folder).metrics() if RunFolder.holds_run(folder) else None)
    own = {"model": cfg.model, "model_args": cfg.model_args, "classes": ckpt.classes,
           "num_classes": len(ckpt.classes), "image_size": cfg.image_size,
           "mean": list(cfg.mean), "std": list(cfg.std), "tta": cfg.tta,
           "tta_share": cfg.tta_share, "temperature": temperature,
           "temperature_from": temperature_from,
           "input": input_spec(cfg.image_size), "output": "logits (N, classes); softmax gives "
           "probabilities", "epoch": ckpt.epoch, "val_acc": ckpt.val_acc,
           "made_from": f"{ckpt.path.parent.name}/{ckpt.path.name}",
           "weights_dtype": "bfloat16" if bf16_weights else "as trained",
           "cifarlab_version": __version__,
           "settings": {**cfg.to_dict(), **dict.fromkeys(WHERE_IT_RAN)}}
    card = model_card(cfg, own, library_of(cfg.model), metrics)
    weights = compact(ckpt.state_dict) if bf16_weights else ckpt.state_dict
    path = write_package(out, weights=weights, config=hub_config(ckpt, net, own),
                         card=card, metrics=metrics)
    result: dict[str, Any] = {"path": str(path), "format": "package", "metadata": own}
    if check:
        x = torch.rand(5, 3, cfg.image_size, cfg.image_size,
                       generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            got = load_model(path)(x)
            expected = load_model(source)(x)
        result["max_abs_diff"] = (got - expected).abs().max().item()
    return result
