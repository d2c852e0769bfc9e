"""Time evaluation passes of each preset's network, as training runs them (precision,
channels-last): one view against the preset's test-time augmentation, and evaluation batch
sizes side by side.

    python benchmarks/validation_views.py --presets fast 90 94 --batch-sizes 1000 250

The weights are freshly initialised: the time does not depend on them. For each preset, prints
seconds per pass of `--images` images (best of the repeats, the sizes taken in turn within each
repeat) with one view and with the preset's views, at each batch size, and the time a run with
a validation split saves by validating with one view.
"""

from __future__ import annotations

import argparse
import time

import torch

from cifarlab.data import DATASETS
from cifarlab.models import Classifier, create_model, predict_logits
from cifarlab.runs import Config, make_config
from cifarlab.runtime import amp_dtype, cpu_name, eval_batch_size, resolve_device, use_channels_last


def classifier(cfg: Config, tta: str) -> Classifier:
    device = resolve_device(cfg.device)
    net = create_model(cfg.model, 10, **cfg.model_args).to(device)
    channels_last = use_channels_last(cfg.channels_last, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    cfg = cfg.resolved(None, DATASETS[cfg.dataset].stats)  # the dataset's mean and std
    return Classifier(net, cfg.mean, cfg.std, [str(i) for i in range(10)], tta=tta,
                      amp=amp_dtype(cfg.amp, device), channels_last=channels_last).to(device)


def best_seconds(model: Classifier, images: torch.Tensor, batch_sizes: list[int],
                 repeats: int) -> dict[int, float]:
    """Best time of a pass over `images` at each batch size, the sizes taken in turn."""
    for batch in batch_sizes:
        predict_logits(model, images[:batch], batch)  # warm-up
    best = {batch: float("inf") for batch in batch_sizes}
    for _ in range(repeats):
        for batch in batch_sizes:
            start = time.perf_counter()
            predict_logits(model, images, batch)
            best[batch] = min(best[batch], time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["fast", "90"])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="evaluation batch sizes (default: the preset's)")
    args = p.parse_args()
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.presets:
        cfg = make_config(name)
        sizes = args.batch_sizes or [eval_batch_size(cfg.eval_batch_size,
                                                     resolve_device(cfg.device))]
        one = best_seconds(classifier(cfg, "none"), images, sizes, args.repeats)
        tta = best_seconds(classifier(cfg, cfg.tta), images, sizes, args.repeats)
        for batch in sizes:
            saved = (f"{cfg.epochs} epochs save {cfg.epochs * (tta[batch] - one[batch]):.1f} s"
                     if cfg.val_size else "no validation split in this preset")
            print(f"{name}: {args.images} images in batches of {batch}: one view "
                  f"{one[batch]:.2f} s, {cfg.tta} {tta[batch]:.2f} s; {saved}", flush=True)


if __name__ == "__main__":
    main()
