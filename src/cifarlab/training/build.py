"""A Trainer assembled from a run's settings: the data moved to the device, the networks, the
optimizer and its schedule, the augmentation and the random streams, each built by its own
module and handed to the Trainer."""

from __future__ import annotations

import torch

from cifarlab.data import DataSplits
from cifarlab.data.augment import Augmenter
from cifarlab.errors import CifarlabError
from cifarlab.runs import Config
from cifarlab.training.distributed import Dist
from cifarlab.training.networks import build_networks
from cifarlab.training.optim import build_optimizer, build_scheduler
from cifarlab.training.state import TrainRandom
from cifarlab.training.trainer import Trainer, steps_per_epoch


def augmenter_of(cfg: Config) -> Augmenter:
    """The training augmentation a run's settings describe."""
    return Augmenter(mean=cfg.mean, std=cfg.std, crop_padding=cfg.crop_padding,
                     crop_mode=cfg.crop_mode, flip=cfg.flip, rotation=cfg.rotation,
                     color_jitter=cfg.color_jitter, cutout=cfg.cutout)


def build_trainer(cfg: Config, data: DataSplits, *, device: torch.device,
                  dist: Dist | None = None, fresh: bool = True) -> Trainer:
    """The Trainer of resolved settings `cfg` on `data` (on the CPU; moved to `device`).
    `fresh=False`: a resumed run, whose weights come from its last.pt (nothing is fetched)."""
    dist = dist or Dist()
    if cfg.batch_size % dist.world:
        raise CifarlabError(f"--batch-size {cfg.batch_size} (the global batch) must divide "
                            f"evenly among {dist.world} processes")
    data = data.to(device)
    nets = build_networks(cfg, num_classes=len(data.classes), train_images=data.train_images,
                          device=device, dist=dist, fresh=fresh)
    optimizer = build_optimizer(nets.model, cfg, len(data.classes), nets.amp)
    random = TrainRandom(cfg.seed, dist.rank, device,
                         flip_images=len(data.train_images) if cfg.alternate_flip else 0)
    return Trainer(cfg, data=data, nets=nets, optimizer=optimizer,
                   scheduler=build_scheduler(
                       optimizer, cfg, steps_per_epoch(len(data.train_images), cfg.batch_size)),
                   augmenter=augmenter_of(cfg), random=random, dist=dist)
