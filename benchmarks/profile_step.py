"""Where a preset's training time goes: real training steps of a preset (its network, batch,
precision, augmentation and optimizer, on the real or stand-in training images) under
torch.profiler, the operators' own CPU time summed into buckets.

    python benchmarks/profile_step.py --preset 94 --data-dir PATH --steps 6

prints each bucket's share (convolutions, weight reorders and casts, normalisation and
activations, pooling, optimizer, augmentation, loss and head, other), then the top operators.
The first two steps run unprofiled (warm-up). `--eval` also profiles one test-set pass with the
preset's TTA, bucketed apart. The steps are the Trainer's own (`Trainer.step`).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cifarlab.data import load_data
from cifarlab.jobs.bench import machine
from cifarlab.models.classifier import predict_logits
from cifarlab.runs import make_config
from cifarlab.runtime import cpu_name, eval_batch_size, prepare_process, resolve_device
from cifarlab.training import build_trainer

# First match wins: an operator's bucket from its name.
BUCKETS = [
    ("convolutions", r"convolution|conv2d|mkldnn_conv|_convolution|addmm|\bmm\b|matmul|linear"),
    ("weight reorders and casts", r"reorder|_to_copy|copy_|\bto\b|contiguous|clone|cat|empty"),
    ("normalisation and activations", r"batch_norm|gelu|silu|relu|native_batch_norm|sigmoid"),
    ("pooling", r"max_pool|amax|adaptive"),
    ("elementwise (optimizer, residuals)",
     r"foreach|_fused|lerp|addcmul|norm|\bmul|\badd|\bdiv|zero_|sqrt|clamp"),
    ("augmentation", r"flip|roll|where|gather|index|randperm|rand|pad|interpolate|upsample"),
    ("loss and head", r"cross_entropy|log_softmax|nll_loss|softmax"),
]


def bucket_of(name: str) -> str:
    for bucket, pattern in BUCKETS:
        if re.search(pattern, name):
            return bucket
    return "other"


def report(prof, title: str, top: int) -> dict:
    """Print self CPU time per bucket and the top operators of one profile; return them
    (seconds)."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    buckets: dict[str, float] = defaultdict(float)
    for e in events:
        buckets[bucket_of(e.key)] += e.self_cpu_time_total / 1e6
    buckets = dict(sorted(buckets.items(), key=lambda kv: -kv[1]))
    # The optimizer's step as a whole (its range includes the operators it calls).
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step")) / 1e6
    print(f"\n{title}: {total / 1e6:.2f} s of operator time; the optimizer's steps "
          f"{optimizer:.2f} s of it")
    for name, t in buckets.items():
        print(f"  {name:<32} {1e8 * t / total:5.1f}%  {t:6.2f} s")
    print("  top operators:")
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    for e in ops:
        print(f"    {e.key:<48} {100 * e.self_cpu_time_total / total:5.1f}%  "
              f"x{e.count}  [{bucket_of(e.key)}]")
    return {"title": title, "seconds": total / 1e6, "buckets": buckets,
            "optimizer_step_seconds": optimizer,
            "top": [{"op": e.key, "seconds": e.self_cpu_time_total / 1e6, "calls": e.count,
                     "bucket": bucket_of(e.key)} for e in ops]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="94")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=6, help="profiled steps (default 6)")
    parser.add_argument("--epoch", type=int, default=0,
                        help="train at this epoch's image size (default: the last epoch's)")
    parser.add_argument("--eval", action="store_true", help="also profile the test pass")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", help="add the profiles to this JSON file (one per preset)")
    args = parser.parse_args()
    cfg = make_config(args.preset, data_dir=args.data_dir)
    device = resolve_device(cfg.device)
    prepare_process(device, cfg.num_threads, cfg.seed)
    data = load_data(cfg.dataset, cfg.data_folder(), download=False, val_size=0,
                     split_seed=cfg.split_seed, image_size=cfg.image_size)
    cfg = cfg.resolved(cfg.data_folder(), data.stats)
    trainer = build_trainer(cfg, data, device=device)
    epoch = args.epoch or cfg.epochs
    size = cfg.epoch_size(epoch)
    print(f"preset {args.preset}: batch {cfg.batch_size}, {size or cfg.image_size} px "
          f"(epoch {epoch}), {trainer.nets.amp or torch.float32}, {cpu_name()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    model = trainer.nets.train_model
    model.train()

    def step(i: int) -> None:
        idx = torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size) % len(data.train_images)
        flips = None if trainer.random.flip_bits is None else trainer.random.flip_bits[idx]
        trainer.step(trainer.data.train_images[idx], trainer.data.train_labels[idx], flips,
                     model, size)

    for i in range(2):
        step(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.steps):
            step(i + 2)
    profiles = [report(prof, f"{args.steps} training steps", args.top)]
    if args.eval:
        tester = trainer.nets.classifier(cfg, data.classes, tta=cfg.tta, tta_share=cfg.tta_share)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            predict_logits(tester, trainer.data.test_images,
                           eval_batch_size(cfg.eval_batch_size, device))
        profiles.append(report(prof, f"test pass ({cfg.tta} TTA)", args.top))
    if args.out:
        out = Path(args.out)
        saved = json.loads(out.read_text()) if out.is_file() else {**machine(), "presets": {}}
        saved["presets"][args.preset] = {
            "batch_size": cfg.batch_size, "image_size": size or cfg.image_size,
            "precision": str(trainer.nets.amp or torch.float32).replace("torch.", ""),
            "command": f"python benchmarks/profile_step.py --preset {args.preset} --data-dir "
                       f"PATH --steps {args.steps}" + (" --eval" if args.eval else "")
                       + f" --out {args.out}",
            "profiles": profiles}
        out.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
