"""What this machine can compute, measured the same day as the runs it is compared with: the
matrix-product rate in a run's precision (the ceiling a training run's utilisation is measured
against), and the rate of a preset's own convolutions, forward and backward, at its batch and
memory format. Used by `cifarlab bench` (the matrix-product rate, once per sitting and
precision) and benchmarks/machine_peak.py (both)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.models import create_model
from cifarlab.models.cpu_convolutions import cpu_convolutions
from cifarlab.runs import Config
from cifarlab.runtime import synchronize, use_channels_last


def _best_seconds(fn, seconds: float, device: torch.device) -> float:
    """The fastest of repeated calls of `fn` within about `seconds` (after one warm-up call):
    the machine's rate, not its noise."""
    fn()
    synchronize(device)
    best = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


# Square sizes whose products reach the device's rate within a second or two: a CPU's at 2048
# (in float32, where bf16 is emulated, one 2048 product takes about 0.1 s; in emulated bf16
# 15 s, so such a CPU is measured in the float32 its runs use), a GPU's only at 8192.
MATMUL_SIZES = {"cpu": (1024, 2048), "cuda": (4096, 8192), "mps": (2048, 4096)}


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.bfloat16,
                sizes: tuple[int, ...] | None = None, seconds: float = 1.5) -> float:
    """FLOP/s of the fastest square matrix product of `sizes` (default: the device's
    MATMUL_SIZES) in `dtype` (best of repeats)."""
    rates = []
    for n in sizes or MATMUL_SIZES.get(device.type, MATMUL_SIZES["cpu"]):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        rates.append(2 * n**3 / _best_seconds(lambda a=a, b=b: a @ b, seconds, device))
    return max(rates)


def _conv_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Conv2d, torch.Size]]:
    """Each convolution of `model` with the shape of its input on `x`."""
    seen: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [m.register_forward_hook(lambda m, inp, out: seen.append((m, inp[0].shape)))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def conv_rates(cfg: Config, device: torch.device, dtype: torch.dtype | None, size: int,
               seconds: float = 0.5) -> list[dict[str, Any]]:
    """Each convolution of the preset's network at its training batch (--micro-batch pieces
    where it has them), `size` pixels, its memory format and `dtype` (None: float32): FLOPs and
    FLOP/s forward, and forward with backward (input and weight gradients)."""
    batch = cfg.pieces_of(device.type) or cfg.batch_size
    model = create_model(cfg.model, 10, **cfg.model_args).to(device)
    memory = (torch.channels_last if use_channels_last(cfg.channels_last, device)
              else torch.contiguous_format)
    model = model.to(memory_format=memory)
    if device.type == "cpu":
        cpu_convolutions(model)  # as training runs them
    dtype = dtype or torch.float32
    x = torch.randn(2, 3, size, size, device=device).contiguous(memory_format=memory)
    rows = []
    trained_before = False  # an input gradient only behind a trained layer
    for conv, shape in _conv_inputs(model, x):
        w = conv.weight.detach().to(dtype).requires_grad_(conv.weight.requires_grad)
        inp = torch.randn(batch, *shape[1:], device=device, dtype=dtype)
        inp = inp.contiguous(memory_format=memory).requires_grad_(trained_before)
        trained_before = trained_before or w.requires_grad
        out_shape = F.conv2d(inp[:1], w, None, conv.stride, conv.padding).shape
        flops = 2 * batch * out_shape[1:].numel() * w[0].numel()
        grad = torch.randn(batch, *out_shape[1:], device=device, dtype=dtype)
        grad = grad.contiguous(memory_format=memory)

        def forward(inp=inp, w=w, conv=conv):
            return conv._conv_forward(inp, w, None)

        def both(inp=inp, w=w, grad=grad, forward=forward):
            forward().backward(grad)

        fwd = _best_seconds(lambda: forward(), seconds, device)
        passes = 1 + int(w.requires_grad) + int(inp.requires_grad)
        bwd = _best_seconds(both, seconds, device) if passes > 1 else fwd
        rows.append({"layer": f"{shape[1]}->{w.shape[0]} {w.shape[2]}x{w.shape[3]} at "
                              f"{shape[2]}x{shape[3]}",
                     "flops": flops, "forward_flop_per_s": flops / fwd,
                     "train_flop_per_s": passes * flops / bwd, "passes": passes})
    return rows
