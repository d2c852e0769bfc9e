"""This machine's ceiling in each precision its runs compute in, measured the same day as the
runs it is compared with: square matrix products (the rate `cifarlab bench` reports
utilisation against: bf16 where the CPU has it natively, float32 where it has not), then each
named preset's own convolutions, forward and with backward, at its training batch (or pieces),
memory format and precision, at each image size it trains at.

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
from cifarlab.jobs.throughput import MATMUL_SIZES, conv_rates, matmul_rate
from cifarlab.runs import make_config
from cifarlab.runtime import amp_dtype, compute_dtype, precision_name, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=["94"])
    parser.add_argument("--out", help="also write the figures here as JSON")
    args = parser.parse_args()
    device = resolve_device("auto")
    info = machine()
    configs = {preset: make_config(preset) for preset in args.presets}
    precisions = dict.fromkeys(precision_name(compute_dtype(c.amp, device))
                               for c in configs.values())
    print(f"{info['cpu'] if device.type == 'cpu' else info['gpu']}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    sizes = {p: {n: matmul_rate(device, getattr(torch, p), sizes=(n,), seconds=1.0)
                 for n in MATMUL_SIZES.get(device.type, MATMUL_SIZES["cpu"])}
             for p in precisions}
    peaks = {p: max(rates.values()) for p, rates in sizes.items()}
    for p, rates in sizes.items():
        for n, rate in rates.items():
            print(f"{p} matrix product {n}x{n}: {rate / 1e12:.2f} TFLOP/s")
    result = {**info, "threads": torch.get_num_threads(), "matmul_flop_per_s": peaks,
              "matmul_by_size": sizes, "presets": {}}
    for preset, cfg in configs.items():
        dtype = amp_dtype(cfg.amp, device)
        peak = peaks[precision_name(dtype)]
        result["presets"][preset] = {"precision": precision_name(dtype)}
        for size in sorted({cfg.epoch_size(e) for e in range(1, cfg.epochs + 1)}):
            rows = conv_rates(cfg, device, dtype, size)
            flops = sum(r["flops"] * r["passes"] for r in rows)
            seconds = sum(r["flops"] * r["passes"] / r["train_flop_per_s"] for r in rows)
            print(f"\n{preset} at {size} px, batch {cfg.pieces_of(device.type) or cfg.batch_size}, "
                  f"{precision_name(dtype)}: convolutions forward and backward at "
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
