"""Optimizer and learning-rate schedule of a run: parameter groups (each with a `role` the
schedule reads), the optimizer (SGD, AdamW, or Muon for the conv filters) and a schedule stepped
every batch."""

from __future__ import annotations

import math

import torch
from torch import nn

from cifarlab.models import find_head
from cifarlab.runs import Config
from cifarlab.training.muon import Muon


def lr_factor(cfg: Config, t: float) -> float:
    """Learning-rate multiplier at time `t`, measured in epochs (fractional within an epoch).
    Warm-up is a share of the run, so a shortened run still leaves it."""
    warmup = cfg.warmup * cfg.epochs
    if cfg.schedule == "onecycle":  # linear up over the warm-up, then linear down to 0
        if t < warmup:
            return t / warmup
        return max(0.0, (cfg.epochs - t) / max(cfg.epochs - warmup, 1e-8))
    warm = min(1.0, t / warmup) if warmup else 1.0
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * t / (cfg.t_max or cfg.epochs)))
    if cfg.schedule == "step":
        return warm * cfg.gamma ** math.floor(t / cfg.step_size)
    return warm


def early_parameters(model: nn.Module, cfg: Config) -> list[nn.Parameter]:
    """Parameters trained only in the first `whiten_bias_share` of the run: fastnet's whitening
    bias, as in airbench (none when the share is the whole run)."""
    if cfg.whiten_bias_share >= 1 or not hasattr(model, "early_parameters"):
        return []
    return list(model.early_parameters())


def trains_early(cfg: Config, step: int, steps_per_epoch: int) -> bool:
    """Whether the early-only parameters still train at (0-based) step `step` of the run."""
    return step < cfg.whiten_bias_share * cfg.epochs * steps_per_epoch


def build_optimizer(model: nn.Module, cfg: Config, num_classes: int | None = None,
                    amp: torch.dtype | None = None) -> torch.optim.Optimizer:
    """Parameter groups, each with a `role` that the schedule reads: conv/linear weights;
    norm weights and biases, which can have their own learning rate (same decay per step) or no
    weight decay at all; what trains only early in the run (`early_parameters`), with the norms'
    settings; and with Muon, the conv filters (4-D) in a group of their own, orthogonalised in
    bf16 when the run computes in bf16 (`amp`, as the record does) unless `muon_ns_precision`
    says float32. With a `body_lr_scale`, each group is split: all but the classifier at that
    share of its rate."""
    early = {id(p) for p in early_parameters(model, cfg)}
    trained = [p for p in model.parameters() if p.requires_grad]
    filters = {id(p) for p in trained if p.ndim == 4} if cfg.optimizer == "muon" else set()
    weights = [p for p in trained if p.ndim > 1 and id(p) not in early | filters]
    others = [p for p in trained if p.ndim <= 1 and id(p) not in early]
    scale = cfg.norm_bias_lr_scale
    norm_settings = {"lr": cfg.lr * scale,
                     "weight_decay": cfg.weight_decay / scale if cfg.decay_norm_and_bias else 0.0}
    groups = [{"params": weights, "weight_decay": cfg.weight_decay, "role": "weights"},
              {"params": others, **norm_settings, "role": "norms"}]
    if early:
        groups.append({"params": [p for p in trained if id(p) in early], **norm_settings,
                       "role": "early"})
    if filters:
        groups.append({"params": [p for p in trained if id(p) in filters], "lr": cfg.muon_lr,
                       "momentum": cfg.muon_momentum, "weight_decay": 0.0, "muon": True,
                       "role": "filters"})
    if cfg.body_lr_scale != 1:
        groups = split_body_and_head(groups, model, cfg, num_classes)
    # On CUDA one fused kernel steps all parameters of a group; the CPU keeps torch's default.
    fused = {"fused": True} if _on_cuda(model) else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), **fused)
    if cfg.optimizer == "muon":
        low = amp == torch.bfloat16 and cfg.muon_ns_precision == "auto"
        ns_dtype = torch.bfloat16 if low else torch.float32
        return Muon(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                    ns_dtype=ns_dtype)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           **fused)


def _on_cuda(model: nn.Module) -> bool:
    return any(p.is_cuda for p in model.parameters())


def split_body_and_head(groups: list[dict], model: nn.Module, cfg: Config,
                        num_classes: int | None) -> list[dict]:
    """Each group twice: the body's parameters at `body_lr_scale` of the group's rate (a
    pretrained body changes slowly), the new classifier's at the full rate."""
    if num_classes is None:
        raise ValueError("body_lr_scale needs the number of classes to find the classifier")
    head = {id(p) for p in model.get_submodule(find_head(model, num_classes)).parameters()}
    out = []
    for group in groups:
        lr = group.get("lr", cfg.lr)
        body = [p for p in group["params"] if id(p) not in head]
        out.append({**group, "params": body, "lr": lr * cfg.body_lr_scale, "part": "body"})
        out.append({**group, "params": [p for p in group["params"] if id(p) in head],
                    "lr": lr, "part": "head"})
    return [g for g in out if g["params"]]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule, stepped every batch; the early-only group stops learning once its share of
    the run is over: with a learning rate of 0 it stays as it is, as when airbench stops its
    gradient."""
    def factor(step: int) -> float:
        return lr_factor(cfg, step / steps_per_epoch)

    def early_factor(step: int) -> float:
        return factor(step) if trains_early(cfg, step, steps_per_epoch) else 0.0

    lambdas = [early_factor if g.get("role") == "early" else factor
               for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
