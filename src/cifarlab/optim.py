"""Optimizer and learning-rate schedule: two parameter groups, a per-step schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from cifarlab.config import Config


def lr_factor(cfg: Config, t: float) -> float:
    """Learning-rate multiplier at time `t`, measured in epochs (fractional within an epoch)."""
    if cfg.schedule == "onecycle":  # linear up over warmup_epochs, then linear down to 0
        if t < cfg.warmup_epochs:
            return t / cfg.warmup_epochs
        return max(0.0, (cfg.epochs - t) / max(cfg.epochs - cfg.warmup_epochs, 1e-8))
    warm = min(1.0, t / cfg.warmup_epochs) if cfg.warmup_epochs else 1.0
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * t / (cfg.t_max or cfg.epochs)))
    if cfg.schedule == "step":
        return warm * cfg.gamma ** math.floor(t / cfg.step_size)
    return warm


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Two parameter groups: conv/linear weights, and norm weights and biases, which can have
    their own learning rate (same decay per step) or no weight decay at all."""
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    others = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    scale = cfg.norm_bias_lr_scale
    groups = [{"params": weights, "weight_decay": cfg.weight_decay},
              {"params": others, "lr": cfg.lr * scale,
               "weight_decay": cfg.weight_decay / scale if cfg.decay_norm_and_bias else 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
