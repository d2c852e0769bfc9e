"""This machine's bf16 ceiling, measured the same day as the runs it is compared with: square
matrix products (the rate `cifarlab bench` reports utilisation against), then each named
preset's own convolutions, forward and with backward, at its training batch (or --micro-batch
pieces), memory format and precision, at each image size it trains at.

    python benchmarks/machine_peak.py 94 seed-fast --out benchmarks/machine-peak-xeon.json

A convolution's rate above the matrix-product rate's share is what the network's shapes allow;
the gap between a preset's FLOP-weighted convolution rate and its achieved rate in a bench
run is time spent outside convolutions (see benchmarks/profile_step.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cifarlab.jobs.bench import machine
from cifarlab.jobs.throughput import conv_rates, matmul_rate
from cifarlab.runs import make_config
from cifarlab.runtime import amp_dtype, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=["94"])
    parser.add_argument("--out", help="also write the figures here as JSON")
    args = parser.parse_args()
    device = resolve_device("auto")
    info = machine()
    sizes = {n: matmul_rate(device, sizes=(n,), seconds=3.0) for n in (1024, 2048, 4096)}
    peak = max(sizes.values())
    print(f"{info['cpu'] if device.type == 'cpu' else info['gpu']}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for n, rate in sizes.items():
        print(f"bf16 matrix product {n}x{n}: {rate / 1e12:.2f} TFLOP/s")
    result = {**info, "threads": torch.get_num_threads(),
              "bf16_matmul_flop_per_s": peak, "matmul_by_size": sizes, "presets": {}}
    for preset in args.presets:
        cfg = make_config(preset)
        dtype = amp_dtype(cfg.amp, device)
        result["presets"][preset] = {}
        for size in sorted({cfg.epoch_size(e) for e in range(1, cfg.epochs + 1)}):
            rows = conv_rates(cfg, device, dtype, size)
            flops = sum(r["flops"] * r["passes"] for r in rows)
            seconds = sum(r["flops"] * r["passes"] / r["train_flop_per_s"] for r in rows)
            print(f"\n{preset} at {size} px, batch {cfg.micro_batch or cfg.batch_size}, "
                  f"{dtype or torch.float32}: convolutions forward and backward at "
                  f"{flops / seconds / 1e12:.2f} TFLOP/s ({100 * flops / seconds / peak:.0f}% "
                  "of the matrix product)")
            for r in rows:
                print(f"  {r['layer']:<28} forward {r['forward_flop_per_s'] / 1e12:5.2f}  "
                      f"with backward {r['train_flop_per_s'] / 1e12:5.2f} TFLOP/s")
            result["presets"][preset][f"{size}px"] = {"conv_flop_per_s": flops / seconds,
                                                      "layers": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
