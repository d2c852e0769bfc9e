"""Time one validation pass (5,000 images) of each preset's network with one view and with the
preset's test-time augmentation, as training runs it (precision, channels-last, batch size).

    python benchmarks/validation_views.py --presets fast 90 --repeats 3

The weights are freshly initialised: the time does not depend on them. Prints seconds per pass
(best of the repeats) and the time a run saves by validating with one view.
"""

from __future__ import annotations

import argparse
import time

import torch

from cifarlab.bench import cpu_name
from cifarlab.config import make_config
from cifarlab.inference import Classifier, predict_logits
from cifarlab.models import create_model
from cifarlab.runtime import amp_dtype, resolve_device, use_channels_last


def seconds_per_pass(cfg, tta: str, images: torch.Tensor, repeats: int) -> float:
    device = resolve_device(cfg.device)
    net = create_model(cfg.model, 10, **cfg.model_args).to(device)
    channels_last = use_channels_last(cfg.channels_last, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    mean, std = cfg.normalization()
    model = Classifier(net, mean, std, [str(i) for i in range(10)], tta,
                       amp_dtype(cfg.amp, device), channels_last).to(device)
    predict_logits(model, images[:cfg.eval_batch_size], cfg.eval_batch_size)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict_logits(model, images, cfg.eval_batch_size)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["fast", "90"])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.presets:
        cfg = make_config(name)
        one = seconds_per_pass(cfg, "none", images, args.repeats)
        tta = seconds_per_pass(cfg, cfg.tta, images, args.repeats)
        saved = (f"{cfg.epochs} epochs save {cfg.epochs * (tta - one):.1f} s" if cfg.val_size
                 else "no validation split in this preset: nothing to save")
        print(f"{name}: {args.images} images, one view {one:.2f} s, {cfg.tta} {tta:.2f} s; "
              f"{saved}")


if __name__ == "__main__":
    main()
