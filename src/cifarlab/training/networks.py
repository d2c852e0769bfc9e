"""The networks a run trains: the model built from the settings (with its data-dependent
initialisation and memory format), its training wrappers (DDP, torch.compile), the moving
average of its weights that is evaluated, and the precision they all compute in."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cifarlab.data.pixels import normalize, to_float
from cifarlab.errors import CifarlabError
from cifarlab.models import Classifier, create_model
from cifarlab.models.cpu_convolutions import cpu_convolutions
from cifarlab.models.external import check_input_size, parse_name
from cifarlab.runs import Config
from cifarlab.runtime import amp_dtype, compile_blocker, use_channels_last
from cifarlab.training.distributed import Dist


class MovingAverage(nn.Module):
    """An exponential moving average of a model's weights and buffers, evaluated instead of
    them. Its decay warms up: update n (from 0) blends in the model with weight
    1 - min(decay, (1 + n) / (10 + n)), so the initial weights fade within a short run instead
    of weighing on it (as in timm); the first update copies the model. Unlike torch's
    AveragedModel, an update never reads its count back to the host (on a GPU, a wait for every
    queued kernel); its state_dict has AveragedModel's keys, so older checkpoints load."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model)
        self.decay = decay
        device = next(model.parameters()).device
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=device))

    def _tensors(self, model: nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        n = self.n_averaged.to(torch.float32)
        weight = torch.where(n == 0, 1.0, 1 - ((1 + n) / (10 + n)).clamp(max=self.decay))
        for mine, theirs in zip(self._tensors(self.module), self._tensors(model), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs.detach(), weight.to(mine.dtype))
            else:  # e.g. BatchNorm's batch counter
                mine.copy_(theirs)
        self.n_averaged += 1


@dataclass
class Networks:
    model: nn.Module  # the network whose weights the optimizer changes
    train_model: nn.Module  # what a step calls: `model`, maybe under DDP and torch.compile
    ema: MovingAverage | None  # the moving average of `model`, if any
    device: torch.device
    amp: torch.dtype | None  # the autocast precision of training and evaluation (None: float32)
    channels_last: bool
    compiled: bool = False  # `train_model` under torch.compile
    compile_blocker: str | None = None  # why --compile could not compile, if it could not

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, saved and tested: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def classifier(self, cfg: Config, classes: Sequence[str], tta: str = "none",
                   tta_share: float = 1.0) -> Classifier:
        """The evaluated weights as the run's inference path sees them (pixels in, logits
        out), in the run's precision and memory format."""
        return Classifier(self.eval_model, cfg.mean, cfg.std, classes, tta=tta,
                          tta_share=tta_share, amp=self.amp, channels_last=self.channels_last,
                          image_size=cfg.image_size).to(self.device)


def build_networks(cfg: Config, *, num_classes: int, train_images: torch.Tensor,
                   device: torch.device, dist: Dist, fresh: bool = True) -> Networks:
    """The model (initial weights: pretrained, from a file or data-dependent such as fastnet's
    whitening; memory format), its training wrappers (DDP, torch.compile) and its EMA.
    `fresh=False` (a resumed run, whose weights come from last.pt) skips fetching weights."""
    weights = cfg.weights if fresh else None
    model = create_model(cfg.model, num_classes, pretrained=fresh and cfg.pretrained,
                         weights=weights, **cfg.model_args).to(device)
    if parse_name(cfg.model):  # another library's network: can it take our image size?
        check_input_size(model, cfg.model, cfg.image_size, device)
    if hasattr(model, "init_from_data") and not weights:  # e.g. fastnet's whitening layer
        model.init_from_data(normalize(to_float(train_images[:5000]), cfg.mean, cfg.std))
    channels_last = use_channels_last(cfg.channels_last, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cpu":  # same results; oneDNN's weight gradient wastes time on padding
        cpu_convolutions(model)
    train_model = model
    if dist.active:  # gradients averaged over processes; rank 0's weights to start
        if cfg.sync_bn:
            if device.type != "cuda":
                raise CifarlabError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs "
                                    "only; drop it on the CPU")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    blocker = compile_blocker(device) if cfg.compile else None
    compiled = cfg.compile and blocker is None
    if compiled:
        train_model = torch.compile(train_model)
    ema = MovingAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    return Networks(model, train_model, ema, device, amp_dtype(cfg.amp, device), channels_last,
                    compiled, blocker)
