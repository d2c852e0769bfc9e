"""Optimizer and learning-rate schedule: parameter groups, a per-step schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from cifarlab.config import Config


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


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Conv/linear weights; norm weights and biases, which can have their own learning rate
    (same decay per step) or no weight decay at all; and, in a third group of its own, what
    trains only early in the run (`early_parameters`), with the norms' settings."""
    early = {id(p) for p in early_parameters(model, cfg)}
    trained = [p for p in model.parameters() if p.requires_grad]
    weights = [p for p in trained if p.ndim > 1 and id(p) not in early]
    others = [p for p in trained if p.ndim <= 1 and id(p) not in early]
    scale = cfg.norm_bias_lr_scale
    norm_settings = {"lr": cfg.lr * scale,
                     "weight_decay": cfg.weight_decay / scale if cfg.decay_norm_and_bias else 0.0}
    groups = [{"params": weights, "weight_decay": cfg.weight_decay},
              {"params": others, **norm_settings}]
    if early:
        groups.append({"params": [p for p in trained if id(p) in early], **norm_settings})
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule, stepped every batch; a third (early-only) group stops learning once its
    share of the run is over: with a learning rate of 0 it stays as it is, as when airbench
    stops its gradient."""
    def factor(step: int) -> float:
        return lr_factor(cfg, step / steps_per_epoch)

    def early_factor(step: int) -> float:
        return factor(step) if step < cfg.whiten_bias_share * cfg.epochs * steps_per_epoch else 0.0

    lambdas = [factor, factor, early_factor][:len(optimizer.param_groups)]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
