"""The epoch time of every network the docs show, with the preset it is shown with: the
Trainer's own steps (the preset's batch, precision, memory format, augmentation and optimizer)
on the real training images, one warm-up step, then the median of timed steps times the steps
in an epoch. Depthwise-separable networks are also timed as they ran before their depthwise
layers left bf16 (`--before`), interleaved with the current path in the same process.

    python benchmarks/epoch_time.py --data-dir PATH --out benchmarks/epoch-times-xeon.json

Fine-tuning presets start from ImageNet weights, which cannot be downloaded here: their
networks are timed from random weights (the same arithmetic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from cifarlab.data import load_data
from cifarlab.jobs.bench import machine
from cifarlab.models.cpu_convolutions import CpuConv2d
from cifarlab.runs import make_config
from cifarlab.runtime import prepare_process, resolve_device
from cifarlab.training import build_trainer

# (the command as the docs show it, its preset, its settings)
SHOWN = [
    ("cifarlab train --model tv:efficientnet_b0 --epochs 10", "fast",
     dict(model="tv:efficientnet_b0")),
    ("cifarlab train --model tv:mobilenet_v2", "fast", dict(model="tv:mobilenet_v2")),
    ("cifarlab train --model tv:mobilenet_v3_small", "fast", dict(model="tv:mobilenet_v3_small")),
    ("cifarlab train --model timm:resnet18 --image-size 64", "fast",
     dict(model="timm:resnet18", image_size=64)),
    ("cifarlab train --preset finetune --model tv:resnet50", "finetune",
     dict(model="tv:resnet50", pretrained=False)),
]
DEPTHWISE = {"tv:efficientnet_b0", "tv:mobilenet_v2", "tv:mobilenet_v3_small"}


_CURRENT = CpuConv2d._conv_forward


def depthwise_in_bf16(on: bool) -> None:
    """The path before (grouped convolutions left in autocast's bf16), or the current one."""
    CpuConv2d._conv_forward = CpuConv2d._trimmed if on else _CURRENT


def time_steps(trainer, steps: int, before: bool) -> dict[bool, list[float]]:
    """Seconds of `steps` training steps (after one warm-up), alternating with the old path
    when `before`: {False: [...], True: [...]}."""
    cfg, model = trainer.cfg, trainer.nets.train_model
    model.train()
    times: dict[bool, list[float]] = {False: [], True: []}
    paths = [False, True] if before else [False]
    for i in range(steps + 1):
        for old in paths:
            depthwise_in_bf16(old)
            idx = torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size)
            t0 = time.perf_counter()
            trainer.step(trainer.data.train_images[idx], trainer.data.train_labels[idx], None,
                         model)
            if i:  # the first is the warm-up
                times[old].append(time.perf_counter() - t0)
    depthwise_in_bf16(False)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--before", action="store_true",
                        help="also time depthwise layers in bf16, as before")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()
    device = resolve_device("cpu")
    prepare_process(device, None, 0)
    result = {**machine(), "threads": torch.get_num_threads(), "steps_timed": args.steps,
              "networks": []}
    data = None
    for command, preset, settings in SHOWN:
        cfg = make_config(preset, data_dir=args.data_dir, **settings)
        if data is None or data.train_images.shape[-1] != cfg.image_size:
            data = load_data(cfg.dataset, cfg.data_folder(), download=False, val_size=0,
                             split_seed=0, image_size=cfg.image_size)
        cfg = cfg.resolved(cfg.data_folder(), data.stats)
        trainer = build_trainer(cfg, data, device=device, fresh=False)
        times = time_steps(trainer, args.steps, args.before and cfg.model in DEPTHWISE)
        steps = trainer.steps_per_epoch
        row = {"command": command, "model": cfg.model, "preset": preset,
               "image_size": cfg.image_size, "batch_size": cfg.batch_size,
               "precision": str(trainer.nets.amp or torch.float32).replace("torch.", ""),
               "steps_per_epoch": steps,
               "epoch_seconds": statistics.median(times[False]) * steps,
               "epoch_seconds_depthwise_bf16": (statistics.median(times[True]) * steps
                                                if times[True] else None)}
        before = row["epoch_seconds_depthwise_bf16"]
        print(f"{command}: {row['epoch_seconds'] / 60:.1f} min an epoch ({steps} steps of "
              f"{cfg.batch_size} at {cfg.image_size} px, {row['precision']})"
              + (f"; {before / 60:.1f} min with depthwise layers in bf16" if before else ""),
              flush=True)
        result["networks"].append(row)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
