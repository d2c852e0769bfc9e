"""The training loop: batches cut from the data on the device, augmented in one call, stepped
by the optimizer and its per-step schedule (optionally in micro-batches, with an EMA and mixed
precision), one-view validation after each epoch, early stopping, and a stop on any signal that
loses nothing.

A `Trainer` is an assembly of parts built elsewhere (`training.build.build_trainer` builds them
from the settings); it changes nothing outside itself. `fit(hooks)` trains, and everything
else a run does as it trains (its folder's checkpoints and metrics.csv, its log, the progress
bar, TensorBoard, a search's pruning) is a hook called at a named phase (`training.hooks`).
Its whole state is `state_dict()` / `load_state_dict()`, saved in last.pt every epoch, so that a
run resumes exactly.

Reading order: `fit` -> `train_epoch` -> `step` -> `backward`, then `end_epoch`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data import DataSplits
from cifarlab.data.augment import Augmenter, mixup
from cifarlab.data.pixels import resize
from cifarlab.errors import (
    CheckpointError,
    CifarlabError,
    TrainingError,
    TrainingInterrupted,
    first_line,
)
from cifarlab.metrics import compute_metrics
from cifarlab.models import predict_logits
from cifarlab.runs import Config
from cifarlab.runs.checkpoint import unwrap, weights_of
from cifarlab.runtime import autocast, eval_batch_size, release_freed_memory
from cifarlab.training.distributed import Dist
from cifarlab.training.hooks.base import Hook, Hooks, StepEnd
from cifarlab.training.networks import Networks
from cifarlab.training.optim import early_parameters, trains_early
from cifarlab.training.state import EpochSums, StopRequest, TrainRandom, TrainState


class Trainer:
    """One run's training, from its parts: the settings, the data (on the training device),
    the networks, the optimizer and its schedule, the augmentation and the random streams."""

    def __init__(self, cfg: Config, *, data: DataSplits, nets: Networks,
                 optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, augmenter: Augmenter,
                 random: TrainRandom, dist: Dist | None = None):
        self.cfg = cfg
        self.data = data
        self.nets = nets
        self.dist = dist or Dist()
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.augment = augmenter
        self.random = random
        self.device = data.train_images.device
        self.local_batch = cfg.batch_size // self.dist.world
        self.steps_per_epoch = steps_per_epoch(len(data.train_images), cfg.batch_size)
        self.has_val = len(data.val_images) > 0
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=nets.amp == torch.float16)
        # Once their share of the run is over, the early-only parameters (fastnet's whitening
        # bias) stop asking for gradients, as in airbench: the backward then skips the input
        # gradient of the first layers. Not under DDP, whose gradient hooks are set once; there
        # the zero learning rate alone keeps them still.
        self.early = [] if self.dist.active else early_parameters(nets.model, cfg)
        self.validator = nets.classifier(cfg, data.classes)  # one view: it only picks epochs
        self.state = TrainState()
        self.stop = StopRequest()
        self.hooks = Hooks()
        self.started = time.perf_counter()
        self.notes: list[str] = []  # what the log should say when training starts

    # --- state
    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.started

    def lr(self) -> float:
        """The learning rate of the first parameter group, now."""
        return self.optimizer.param_groups[0]["lr"]

    def weights(self, state: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
        """The weights to use: the EMA's, else the trained ones (with `state`, a state_dict()
        just taken and no EMA, its own tensors: the same weights, written once)."""
        if state is not None and self.nets.ema is None:
            return state["model"]
        return weights_of(self.nets.eval_model)

    def steps_done(self, epochs: int, step: int = 0) -> int:
        """Optimizer steps after `epochs` finished epochs and `step` more: the global step."""
        return epochs * self.steps_per_epoch + step

    def state_dict(self) -> dict[str, Any]:
        """Everything a run needs to continue exactly. With several processes it is a
        collective call: each one's own part (its augmentation generator, its share of a
        stopped epoch) is gathered into `ranks`."""
        ranks = self.dist.gather({"partial": self.state.partial,
                                  "aug": self.random.aug.get_state()})
        n = self.nets
        return {
            **self.state.state_dict(), "elapsed": self.elapsed(), "ranks": ranks,
            "model": weights_of(n.model),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": n.ema.state_dict() if n.ema is not None else None,
            **self.random.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where `state_dict()` was taken (also with another number of processes,
        when it was taken at an epoch's end)."""
        try:
            unwrap(self.nets.model).load_state_dict(state["model"])
            if self.nets.ema is not None:
                self.nets.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"the saved state does not fit this run's model and "
                                  f"settings: {first_line(e)}") from None
        self.scaler.load_state_dict(state["scaler"])
        self.random.load_state_dict(state)
        self.state.load_state_dict(state)
        ranks = state["ranks"]
        rank = self.dist.rank
        if len(ranks) == self.dist.world:  # the same processes: each takes up its own part
            self.state.partial = ranks[rank]["partial"]
            note = self.random.restore_augmentation(state, ranks[rank]["aug"], rank,
                                                    self.state.epoch)
            self.notes += [note] if note else []
        elif ranks[0]["partial"] is not None:
            raise CifarlabError(f"the run was stopped in the middle of an epoch with "
                                f"{len(ranks)} process(es); resume it with as many")
        else:  # another number of processes, at an epoch's end: fresh augmentation draws
            self.state.partial = None
            self.random.reseed_augmentation(rank, self.state.epoch)

    # --- evaluation
    def validate(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Metrics of the evaluated weights on these images, one view."""
        batch = eval_batch_size(self.cfg.eval_batch_size, self.device)
        return compute_metrics(predict_logits(self.validator, images, batch), labels,
                               self.data.classes)

    # --- training
    def fit(self, hooks: Sequence[Hook] = ()) -> dict[str, Any]:
        """Train the remaining epochs, calling `hooks` at each phase (training.hooks: a run's
        are its folder's files, its log, the progress bar, TensorBoard). Returns the same
        summary on every process."""
        self.hooks = Hooks(hooks)
        self.started = time.perf_counter()
        self.hooks.on_fit_start(self)
        try:
            with self.stop.active():
                for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
                    if self.state.early_stopped:
                        break
                    row = self.end_epoch(epoch, *self.train_epoch(epoch))
                    self.hooks.on_epoch_end(self, row)
        finally:
            self.hooks.on_fit_end(self)
        if self.device.type == "cpu":  # the steps' kept memory: the test would only add to it
            release_freed_memory()
        return {"epochs": self.state.epoch, "best_epoch": self.state.best_epoch,
                "best_val_acc": self.state.best_score if self.has_val else None,
                "early_stopped": self.state.early_stopped, "train_seconds": self.elapsed()}

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over a fresh permutation of the training set (or the rest of an epoch a
        signal stopped): (mean loss, accuracy %, start time)."""
        t0 = time.perf_counter()
        model = self.nets.train_model
        model.train()
        sums, first = self.epoch_sums()
        size = self.cfg.epoch_size(epoch)  # scaled-down images early on (fewer pixels to train)
        self.hooks.on_epoch_start(self, epoch, first)
        for step in range(first, self.steps_per_epoch):
            if self.should_stop(step, sums.loss, epoch):
                self.interrupt(epoch, step, sums)
            idx = self.batch_indices(sums.order, step)
            index = self.steps_done(epoch - 1, step)  # the run's steps before this one
            for p in self.early:
                p.requires_grad_(trains_early(self.cfg, index, self.steps_per_epoch))
            loss, logits, y = self.step(self.data.train_images[idx], self.data.train_labels[idx],
                                        self.flips(idx, epoch), model, size)
            sums.add(loss, logits, y)
            self.hooks.on_step_end(self, StepEnd(epoch, step, index, loss))
        mean_loss, accuracy = sums.means(self.dist)
        self.check_finite(mean_loss, epoch)
        return mean_loss, accuracy, t0

    def epoch_sums(self) -> tuple[EpochSums, int]:
        """A new epoch's data order (the same permutation in every process), or the stopped
        epoch's, and the step to start from."""
        if self.state.partial is None:
            order = torch.randperm(len(self.data.train_images), generator=self.random.order)
            return EpochSums(order, self.device), 0
        partial = self.state.partial
        self.state.partial = None
        return EpochSums.resumed(partial, self.device), partial["step"]

    def batch_indices(self, order: torch.Tensor, step: int) -> torch.Tensor:
        """This process's share of the step's global batch (all of it in a single process)."""
        start = step * self.cfg.batch_size + self.dist.rank * self.local_batch
        return order[start:start + self.local_batch]

    def flips(self, idx: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """With alternating flips: each image's flip this epoch (its first-epoch draw, then the
        other way each epoch); else None (random flips in the augmentation)."""
        bits = self.random.flip_bits
        return None if bits is None else bits[idx] ^ (epoch % 2 == 0)

    def end_epoch(self, epoch: int, loss: float, acc: float, t0: float) -> dict[str, Any]:
        """Validate (rank 0; every process then takes the same decisions) and record the
        epoch: its metrics.csv row."""
        self.check_weights(epoch)
        val = (self.validate(self.data.val_images, self.data.val_labels)
               if self.has_val and self.dist.is_main else None)
        row = self.dist.broadcast(dict(
            epoch=epoch, train_loss=loss, train_acc=acc, val_loss=val and val["loss"],
            val_acc=val and val["top1"], lr=self.lr(),
            epoch_seconds=time.perf_counter() - t0, elapsed_seconds=self.elapsed()))
        self.state.record(row, self.has_val, self.cfg.patience)
        return row

    def step(self, images: torch.Tensor, labels: torch.Tensor, flips: torch.Tensor | None,
             model: nn.Module, size: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch, resized to `size` pixels (default: --image-size):
        (loss, logits, labels)."""
        cfg = self.cfg
        x = resize(self.augment(images, self.random.aug, flips), size or cfg.image_size)
        if self.nets.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels
        y_b = labels
        lam = 1.0
        if cfg.mixup_alpha > 0:
            x, y, y_b, lam = mixup(x, y, cfg.mixup_alpha, self.random.aug)
        self.optimizer.zero_grad(set_to_none=True)
        loss, logits = self.backward(model, x, y, y_b, lam)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.nets.ema is not None:
            self.nets.ema.update_parameters(self.nets.model)
        return loss, logits, y

    def backward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_b: torch.Tensor,
                 lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of the batch's mean loss, in pieces of at most --micro-batch
        images (near-equal sizes), gradients summed: (loss, logits)."""
        cfg = self.cfg
        n = -(-len(x) // (cfg.pieces_of(x.device.type) or len(x)))
        pieces = list(zip(x.tensor_split(n), y.tensor_split(n), y_b.tensor_split(n),
                          strict=True))
        loss = torch.zeros((), device=x.device)
        logits = []
        for i, (xi, yi, bi) in enumerate(pieces):
            # Under DDP, gradients are averaged over processes once, after the last piece.
            last = i == len(pieces) - 1
            sync = contextlib.nullcontext() if last else getattr(model, "no_sync",
                                                                 contextlib.nullcontext)()
            with sync:
                with autocast(self.device, self.nets.amp):
                    out = model(xi)
                    part = lam * F.cross_entropy(out, yi, label_smoothing=cfg.label_smoothing)
                    if lam < 1.0:
                        part = part + (1 - lam) * F.cross_entropy(
                            out, bi, label_smoothing=cfg.label_smoothing)
                    part = part * (len(xi) / len(x))  # this piece's share of the mean
                self.scaler.scale(part).backward()
            loss += part.detach()
            logits.append(out.detach())
        return loss, torch.cat(logits)

    def should_stop(self, step: int, total_loss: torch.Tensor, epoch: int) -> bool:
        """Whether a signal asks to stop before `step`; also stops a run whose loss went bad.
        With several processes they decide together, every 10 steps, so all stop at once."""
        if not self.dist.active:
            if step % 100 == 99:  # a host sync now and then: stop soon after a NaN
                self.check_finite(total_loss.item(), epoch)
            return self.stop.signum is not None
        if step % 10:
            return False
        stop, bad = self.dist.any([self.stop.signum is not None,
                                   not torch.isfinite(total_loss).item()], self.device)
        if bad:
            self.check_finite(float("nan"), epoch)
        if stop and self.stop.signum is None:
            self.stop.signum = signal.SIGTERM  # another process was signalled
        return stop

    def check_finite(self, loss: float, epoch: int) -> None:
        if not math.isfinite(loss):
            self.diverged(f"the training loss became {loss}", epoch)

    def check_weights(self, epoch: int) -> None:
        """Before weights are kept: a BatchNorm statistic can go bad while every batch's loss
        stays finite, and kept weights that compute NaN would be reported as a result."""
        bad = [name for name, t in unwrap(self.nets.eval_model).state_dict().items()
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            self.diverged(f"the weights became NaN or infinite ({', '.join(bad[:2])}"
                          f"{', ...' if len(bad) > 2 else ''})", epoch)

    def diverged(self, what: str, epoch: int) -> None:
        kept = (f"the last good weights (epoch {self.state.epoch}) are kept in the run's "
                "last checkpoint" if self.state.epoch else
                "no epoch had finished, so nothing was kept")
        raise TrainingError(f"{what} in epoch {epoch}; {kept}. Lower --lr or use --amp off")

    def interrupt(self, epoch: int, step: int, sums: EpochSums) -> None:
        """A signal asked to stop before `step`: keep the epoch so far, let the hooks save it
        and say how to resume, and stop (exit code 130 for SIGINT, 143 for SIGTERM)."""
        self.state.partial = sums.partial(step)
        self.check_finite(self.state.partial["loss"], epoch)  # never save weights gone bad
        self.hooks.on_interrupt(self, epoch, step)  # a run's folder raises with its message
        raise TrainingInterrupted(f"stopped by {signal.Signals(self.stop.signum).name} in epoch "
                                  f"{epoch} at step {step}/{self.steps_per_epoch}",
                                  self.stop.signum)


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Whole batches only: the last partial one is dropped (a batch of one would break
    BatchNorm)."""
    return max(1, images // batch_size)
