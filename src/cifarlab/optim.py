"""Optimizer and learning-rate schedule: parameter groups, a per-step schedule, and Muon (the
speed record's optimizer for conv filters)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from cifarlab.config import Config

# Muon's quintic Newton-Schulz coefficients: they push every singular value towards 1 as fast as
# possible in few steps, ending in about [0.7, 1.2] rather than exactly 1 (which trains as well).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


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


def orthogonalize(g: torch.Tensor, steps: int = 3, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """About U V^T for a matrix g = U S V^T: a few quintic Newton-Schulz steps on g scaled to
    Frobenius norm 1 (so every singular value starts at or below 1), computed in `dtype` (the
    record uses bf16). All-zero columns stay zero under these steps, so they are left out: an
    ImageNet ResNet on 32-pixel images has 1x1 maps in its last stage, where 8 of a 3x3
    filter's 9 taps only ever see padding (there, 8x less work for the same result)."""
    used = g.abs().amax(0) > 0
    if used.all():
        return _newton_schulz(g.to(dtype), steps, eps)
    out = torch.zeros(g.shape, dtype=dtype, device=g.device)
    if used.any():
        out[:, used] = _newton_schulz(g[:, used].to(dtype), steps, eps)
    return out


def _newton_schulz(x: torch.Tensor, steps: int, eps: float) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    x = x / (x.norm() + eps)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for conv filters, Nesterov SGD for everything else, in one optimizer.

    A group with `muon=True` (conv filters, as in airbench94_muon): each filter bank is seen as a
    matrix (out, in x kh x kw); its Nesterov momentum is orthogonalised and that is the step,
    after the weight is rescaled to norm sqrt(out), which takes the place of weight decay.
    Other groups: torch's SGD (momentum without dampening, weight decay added to the gradient).
    torch.optim.Muon takes 2-D parameters only, hence this class. `ns_dtype`: the precision of
    the Newton-Schulz steps (bf16 is 2.5x faster than float32 on a CPU with native bf16).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9,
                 nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 3,
                 ns_dtype: torch.dtype = torch.float32):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        muon=False, ns_steps=ns_steps)
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype  # not a group setting: a checkpoint need not carry it

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["muon"] and group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(g)
                g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
                if group["muon"]:
                    p.mul_(len(p) ** 0.5 / p.norm().clamp(min=1e-12))
                    g = orthogonalize(g.reshape(len(g), -1), group["ns_steps"],
                                      dtype=self.ns_dtype).view_as(p)
                p.add_(g.to(p.dtype), alpha=-lr)
        return loss


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
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    if cfg.optimizer == "muon":
        low = amp == torch.bfloat16 and cfg.muon_ns_precision == "auto"
        ns_dtype = torch.bfloat16 if low else torch.float32
        return Muon(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                    ns_dtype=ns_dtype)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def split_body_and_head(groups: list[dict], model: nn.Module, cfg: Config,
                        num_classes: int | None) -> list[dict]:
    """Each group twice: the body's parameters at `body_lr_scale` of the group's rate (a
    pretrained body changes slowly), the new classifier's at the full rate."""
    from cifarlab.models import find_head

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
