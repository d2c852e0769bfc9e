"""Muon for conv filters (the speed record's optimizer), Nesterov SGD for everything else, in
one torch optimizer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch

from cifarlab.runtime import host_reads_are_free

# Muon's quintic Newton-Schulz coefficients: they push every singular value towards 1 as fast as
# possible in few steps, ending in about [0.7, 1.2] rather than exactly 1 (which trains as well).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 3, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """About U V^T for a matrix g = U S V^T: a few quintic Newton-Schulz steps on g scaled to
    Frobenius norm 1 (so every singular value starts at or below 1), computed in `dtype` (the
    record uses bf16). All-zero columns stay zero under these steps, so they are left out: an
    ImageNet ResNet on 32-pixel images has 1x1 maps in its last stage, where 8 of a 3x3
    filter's 9 taps only ever see padding (there, 8x less work for the same result). On the
    CPU only: finding them is a host sync, which on a GPU costs more than the work it saves."""
    used = g.abs().amax(0) > 0 if host_reads_are_free(g.device) else None
    if used is None or used.all():
        return _newton_schulz(g.to(dtype), steps, eps)
    out = torch.zeros(g.shape, dtype=dtype, device=g.device)
    if used.any():
        out[:, used] = _newton_schulz(g[:, used].to(dtype), steps, eps)
    return out


def _newton_schulz(x: torch.Tensor, steps: int, eps: float) -> torch.Tensor:
    if x.dtype == torch.float32 and x.is_cuda:  # float32 means float32 here, not TF32
        with full_float32_products():
            return _quintic_steps(x, steps, eps)
    return _quintic_steps(x, steps, eps)


@contextlib.contextmanager
def full_float32_products() -> Iterator[None]:
    """Float32 matrix products in full float32 inside, whatever the process chose (CUDA runs
    choose TF32 for speed, `runtime.prepare_process`)."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _quintic_steps(x: torch.Tensor, steps: int, eps: float) -> torch.Tensor:
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
    the Newton-Schulz steps (the record's: bf16).
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
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict, params: list[torch.Tensor]) -> None:
        """One group's step, each operation applied to all its tensors at once (torch's
        foreach kernels: the same arithmetic as one tensor at a time, fewer launches)."""
        momentum = group["momentum"]
        grads = [p.grad for p in params]
        if not group["muon"] and group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        steps = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        if group["muon"]:
            norms = torch._foreach_norm(params)
            torch._foreach_mul_(params, [len(p) ** 0.5 / n.clamp(min=1e-12)
                                         for p, n in zip(params, norms, strict=True)])
            steps = [orthogonalize(g.reshape(len(g), -1), group["ns_steps"],
                                   dtype=self.ns_dtype).view_as(p)
                     for g, p in zip(steps, params, strict=True)]
        torch._foreach_add_(params, [g.to(p.dtype) for g, p in zip(steps, params, strict=True)],
                            alpha=-group["lr"])
