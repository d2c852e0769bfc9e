"""How fast this machine trains and evaluates a run's network, measured in seconds: a few of the
run's own training steps (the Trainer's `step`, on random images, at each size the run can
train at, in its precision, memory format and pieces) and its evaluation, with one view as
validation sees it and with the run's test-time views. `jobs/budget.py` predicts a run's time
from these rates and chooses what fits a time budget.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from cifarlab.data import DataSplits
from cifarlab.models import predict_logits
from cifarlab.runs import Config
from cifarlab.runtime import eval_batch_size, synchronize
from cifarlab.training.build import build_trainer

_STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # any normalisation times the same


@dataclass(frozen=True)
class Speed:
    """Seconds per image: training at each size (forward, backward and the optimizer's step),
    validating (one view) and testing (the run's views); and what measuring them took."""

    train: dict[int, float]
    validate: float
    test: float
    probe_seconds: float


def sizes_of(cfg: Config) -> list[int]:
    """Every image size a run of these settings can train at, whatever its length."""
    low = set(cfg.low_res_size) if cfg.low_res_epochs else set()
    return sorted(low | {cfg.image_size})


def _timed(fn, device: torch.device, repeats: int) -> float:
    """The fastest of `repeats` calls of `fn` after one warm-up call (two on a GPU, whose first
    calls choose kernels). The fastest, not the median: a few steps on a shared machine catch
    its bursts of others' work far more often than an epoch's mean does (benchmarks.md)."""
    for _ in range(2 if device.type == "cuda" else 1):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def measure_speed(cfg: Config, num_classes: int, device: torch.device, repeats: int = 3
                  ) -> Speed:
    """Time the run of settings `cfg` on this machine: `repeats` training steps of one piece
    (its --micro-batch, else its batch) at each size of `sizes_of(cfg)`, and one evaluation
    batch with one view and with the run's test-time views. Nothing is fetched or written; the
    weights are fresh (untrained weights compute as fast)."""
    start = time.perf_counter()
    piece = min(cfg.pieces_of(device.type) or cfg.batch_size, cfg.batch_size)
    probe = dataclasses.replace(cfg, batch_size=piece, micro_batch=None, cpu_micro_batch=None,
                                pretrained=False, weights=None, compile=False,
                                tensorboard=False).resolved(None, _STATS)
    size = cfg.image_size
    images = torch.randint(0, 256, (piece, 3, size, size), dtype=torch.uint8)
    labels = torch.arange(piece) % num_classes
    none = images[:0], labels[:0]
    data = DataSplits(images, labels, *none, *none, [str(c) for c in range(num_classes)],
                      _STATS)
    trainer = build_trainer(probe, data, device=device)
    model = trainer.nets.train_model
    images = trainer.data.train_images
    labels = trainer.data.train_labels
    train = {s: _timed(lambda s=s: trainer.step(images, labels, None, model, s), device,
                       repeats) / piece for s in sizes_of(cfg)}
    batch = min(eval_batch_size(cfg.eval_batch_size, device), piece)
    views = {}
    for tta, share in (("none", 1.0), (cfg.tta, cfg.tta_share)):
        classifier = trainer.nets.classifier(probe, data.classes, tta=tta, tta_share=share)
        views[tta, share] = _timed(lambda c=classifier: predict_logits(c, images[:batch], batch),
                                   device, 1) / batch
    return Speed(train, views["none", 1.0], views[cfg.tta, cfg.tta_share],
                 time.perf_counter() - start)
