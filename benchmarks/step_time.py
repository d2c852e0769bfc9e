"""Time training steps of a preset's network on random data, one batch size after another, in
one process, so that the sizes are compared side by side on the same machine.

    python benchmarks/step_time.py --preset 94 --batch-sizes 256 500 1000 2000

prints, for each size, the seconds one pass over 50,000 images would take at that size (forward,
backward and optimizer step; the preset's precision and memory format; no augmentation, no
data loading; on the CPU, convolutions trimmed as in training). `--compile` also times the
torch.compile'd network (its compile time printed apart); `--plain` also times it as it was
before trimmed convolutions and bf16 Newton-Schulz (plain nn.Conv2d, float32 Newton-Schulz),
side by side. `--freed-memory` times it once more after `keep_freed_memory()` (as training on
the CPU runs: freed blocks reused, not faulted in again; last, since a process cannot undo it),
with each variant's minor page faults per step. Reading it: the best size is the
`--micro-batch` for a preset's batch.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from cifarlab.models import create_model
from cifarlab.models.cpu_convolutions import cpu_convolutions
from cifarlab.runs import make_config
from cifarlab.runtime import (
    amp_dtype,
    autocast,
    device_name,
    keep_freed_memory,
    resolve_device,
)
from cifarlab.training.optim import build_optimizer


def seconds_per_epoch(model, optimizer, batch: int, steps: int, device, amp
                      ) -> tuple[float, float, float]:
    """(seconds of the first two steps, seconds per 50,000 images after them, minor page
    faults per step after them)."""
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t0 = time.perf_counter()
    step()
    step()
    first = time.perf_counter() - t0
    t0, faults = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    return first, (time.perf_counter() - t0) / steps / batch * 50_000, faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="94")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 500, 1000, 2000])
    parser.add_argument("--images", type=int, default=8000,
                        help="images timed per size, after two warm-up steps (default 8000)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--plain", action="store_true",
                        help="also time plain convolutions with float32 Newton-Schulz")
    parser.add_argument("--freed-memory", action="store_true",
                        help="then time again with freed memory kept for reuse")
    args = parser.parse_args()
    cfg = make_config(args.preset, device="auto")
    device = resolve_device(cfg.device)
    amp = amp_dtype(cfg.amp, device)
    print(f"preset {args.preset}: {cfg.model} {cfg.model_args}, {amp or torch.float32}, "
          f"{device_name(device)}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    variants = ["eager", *(["plain"] if args.plain else []),
                *(["compiled"] if args.compile else []),
                *(["kept"] if args.freed_memory else [])]
    for variant in variants:
        if variant == "kept" and not keep_freed_memory():
            print("    kept  (not on this system: glibc's allocator only)")
            continue
        for batch in args.batch_sizes:
            torch.manual_seed(0)
            model = create_model(cfg.model, 10, **cfg.model_args).to(device)
            model = model.to(memory_format=torch.channels_last)
            if device.type == "cpu" and variant != "plain":
                cpu_convolutions(model)  # as build_networks does
            optimizer = build_optimizer(model, cfg, amp=None if variant == "plain" else amp)
            net = torch.compile(model) if variant == "compiled" else model
            first, epoch, faults = seconds_per_epoch(net, optimizer, batch,
                                                     max(2, args.images // batch), device, amp)
            print(f"{variant:>8}  batch {batch:>5}: {epoch:6.1f} s per 50,000 images  "
                  f"(first two steps {first:.1f} s; {faults:,.0f} page faults a step)",
                  flush=True)


if __name__ == "__main__":
    main()
