"""The training loop: batches cut from the data on the device, augmented in one call, stepped
by the optimizer and its per-step schedule (optionally in micro-batches, with an EMA and mixed
precision), one-view validation after each epoch, early stopping, and a stop on any signal that
loses nothing.

A `Trainer` is an assembly of parts built elsewhere (`training.build.build_trainer` builds them
from the settings); it changes nothing outside itself until `fit(folder)` trains into a
`RunFolder` (checkpoints and metrics every epoch). Its whole state is `state_dict()` /
`load_state_dict()`, saved in last.pt every epoch, so that a run resumes exactly.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifarlab.data import DataSplits
from cifarlab.data.augment import Augmenter, mixup
from cifarlab.data.pixels import resize
from cifarlab.errors import CheckpointError, CifarlabError, TrainingError, TrainingInterrupted
from cifarlab.metrics import compute_metrics
from cifarlab.models import predict_logits
from cifarlab.runs import Config, RunFolder
from cifarlab.runs.checkpoint import unwrap, weights_of
from cifarlab.runs.logs import epoch_line, format_duration
from cifarlab.runtime import autocast, eval_batch_size, release_freed_memory
from cifarlab.training.distributed import Dist
from cifarlab.training.networks import Networks
from cifarlab.training.optim import early_parameters, trains_early
from cifarlab.training.state import StopRequest, TrainRandom, TrainState
from cifarlab.version import __version__

_TIMED_STEPS = 3  # steps after the first (warm-up) before a long epoch is announced


class Trainer:
    """One run's training, from its parts: the settings, the data (on the training device),
    the networks, the optimizer and its schedule, the augmentation and the random streams."""

    def __init__(self, cfg: Config, *, data: DataSplits, nets: Networks,
                 optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, augmenter: Augmenter,
                 random: TrainRandom, dist: Dist | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None):
        self.cfg, self.data, self.nets = cfg, data, nets
        self.optimizer, self.scheduler, self.augment = optimizer, scheduler, augmenter
        self.random, self.dist = random, dist or Dist()
        self.on_epoch_end = on_epoch_end  # e.g. a tuning trial reports and may prune
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
        self.folder: RunFolder | None = None
        self.started = time.perf_counter()
        self.first_epoch = 1
        self.notes: list[str] = []  # what the log should say when training starts

    # --- state
    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.started

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
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"the saved state does not fit this run's model and "
                                  f"settings: {first}") from None
        self.scaler.load_state_dict(state["scaler"])
        self.random.load_state_dict(state)
        self.state.load_state_dict(state)
        ranks, rank = state["ranks"], self.dist.rank
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
    def fit(self, folder: RunFolder) -> dict[str, Any]:
        """Train the remaining epochs into `folder` (best.pt when validation improves, last.pt
        and a metrics.csv row every epoch). Returns the same summary on every process."""
        self.folder, self.started = folder, time.perf_counter()
        self.first_epoch = self.state.epoch + 1  # this process's first (resumed: later)
        folder.start_rows(self.state.history)
        self.log_start(folder)
        if self.cfg.tensorboard:
            step = self.state.partial["step"] if self.state.partial else 0
            folder.open_tensorboard(self.steps_done(self.state.epoch, step))
        with self.stop.active():
            for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
                if self.state.early_stopped:
                    break
                self.finish_epoch(epoch, *self.train_epoch(epoch))
        if self.device.type == "cpu":  # the steps' kept memory: the test would only add to it
            release_freed_memory()
        return {"epochs": self.state.epoch, "best_epoch": self.state.best_epoch,
                "best_val_acc": self.state.best_score if self.has_val else None,
                "early_stopped": self.state.early_stopped, "train_seconds": self.elapsed(),
                "run_dir": str(folder.path)}

    def log_start(self, folder: RunFolder) -> None:
        cfg, nets, data, log = self.cfg, self.nets, self.data, folder.log
        params = sum(p.numel() for p in nets.model.parameters())
        log(f"cifarlab {__version__}  preset {cfg.preset}  model {cfg.model} "
            f"({params / 1e6:.2f}M parameters)  device {self.device}  "
            f"precision {nets.amp or torch.float32}".replace("torch.", "")
            + ("  compiled" if nets.compiled else ""))
        if nets.compile_blocker:
            log(f"not compiled: {nets.compile_blocker}; training without it (slower)")
        test = (f"{len(data.test_images)} test images" if data.has_test else
                "no test set (no test/ folder): validation only")
        log(f"{cfg.dataset}: {len(data.train_images)} train, {len(data.val_images)} "
            f"val images, {test}  ->  {folder.path}")
        if data.excluded:  # --exclude
            kinds = ", ".join(f"{k} {n}" for k, n in data.excluded.get("findings", {}).items())
            log(f"left out {data.excluded['images']} training images listed in "
                f"{data.excluded['from']}" + (f" ({kinds})" if kinds else ""))
        step = self.state.partial["step"] if self.state.partial else 0
        if self.state.epoch or step:
            log(f"resuming after epoch {self.state.epoch}" + (f" at step {step}" if step else ""))
        for note in self.notes:
            log(note)

    def finish_epoch(self, epoch: int, loss: float, acc: float, t0: float) -> None:
        """Validate (rank 0; every process then takes the same decisions), keep the best
        weights, save last.pt, write the epoch's row and line."""
        cfg, folder = self.cfg, self.folder
        self.check_weights(epoch)
        val = (self.validate(self.data.val_images, self.data.val_labels)
               if self.has_val and self.dist.is_main else None)
        row = self.dist.broadcast(dict(
            epoch=epoch, train_loss=loss, train_acc=acc, val_loss=val and val["loss"],
            val_acc=val and val["top1"], lr=self.optimizer.param_groups[0]["lr"],
            epoch_seconds=time.perf_counter() - t0, elapsed_seconds=self.elapsed()))
        if self.state.record(row, self.has_val, cfg.patience):
            folder.save_checkpoint("best", config=cfg, classes=self.data.classes,
                                   weights=weights_of(self.nets.eval_model), epoch=epoch,
                                   val_acc=row["val_acc"])
        folder.add_row(row, self.steps_done(epoch))  # before last.pt: a redone epoch
        self.save_last()                             # rewrites its events
        eta = row["elapsed_seconds"] / epoch * (cfg.epochs - epoch)
        folder.log(epoch_line(row, cfg.epochs, eta))
        if self.on_epoch_end is not None:
            self.on_epoch_end(row)
        if self.state.early_stopped:
            folder.log(f"early stop: no better validation accuracy for {cfg.patience} epochs")

    def announce_long_epoch(self, epoch: int, seconds: float, done: int, steps: int) -> None:
        """After this process's first few steps: when its first epoch will take more than two
        minutes, say about how long (the per-epoch line only comes at the epoch's end)."""
        estimate = seconds / done * steps
        if estimate > 120:
            self.folder.log(f"epoch {epoch}/{self.cfg.epochs} will take about "
                            f"{format_duration(estimate)} ({seconds / done:.1f} s a step, "
                            f"{steps} steps)")

    def save_last(self) -> None:
        """last.pt: the weights to use and the whole state (called by every process)."""
        state = self.state_dict()
        # Without an EMA the weights to use are the trained ones: the same tensors, written once.
        weights = state["model"] if self.nets.ema is None else weights_of(self.nets.eval_model)
        val_acc = self.state.history[-1]["val_acc"] if self.state.history else None
        self.folder.save_checkpoint("last", config=self.cfg, classes=self.data.classes,
                                    weights=weights, epoch=self.state.epoch, val_acc=val_acc,
                                    resume=state)

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over a fresh permutation of the training set: (mean loss, accuracy %,
        start time)."""
        t0 = time.perf_counter()
        cfg, model = self.cfg, self.nets.train_model
        model.train()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        if self.state.partial is None:
            n = len(self.data.train_images)
            order = torch.randperm(n, generator=self.random.order).to(self.device)
            first, seen = 0, 0
        else:  # resuming an epoch a signal stopped
            p, self.state.partial = self.state.partial, None
            order, first, seen = p["order"].to(self.device), p["step"], p["seen"]
            total_loss += p["loss"]
            correct += p["correct"]
        size = cfg.epoch_size(epoch)  # scaled-down images early on (fewer pixels to train)
        flip_bits = self.random.flip_bits
        with epoch_bar(self.steps_per_epoch, epoch, cfg.epochs, first) as bar:
            for step in range(first, self.steps_per_epoch):
                if self.should_stop(step, total_loss, epoch):
                    self.state.partial = dict(order=order.cpu(), step=step, seen=seen,
                                              loss=total_loss.item(), correct=correct.item())
                    self.interrupt(epoch, step)
                # This process's share of the global batch (all of it in a single process).
                start = step * cfg.batch_size + self.dist.rank * self.local_batch
                idx = order[start:start + self.local_batch]
                flips = None if flip_bits is None else flip_bits[idx] ^ (epoch % 2 == 0)
                index = self.steps_done(epoch - 1, step)  # steps of the run before this one
                for p in self.early:
                    p.requires_grad_(trains_early(cfg, index, self.steps_per_epoch))
                loss, logits, y = self.step(self.data.train_images[idx],
                                            self.data.train_labels[idx], flips, model, size)
                total_loss += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                if step == first + _TIMED_STEPS and epoch == self.first_epoch:
                    self.announce_long_epoch(epoch, time.perf_counter() - t0, step + 1 - first,
                                             self.steps_per_epoch - first)
                if cfg.tensorboard and (index + 1) % cfg.log_every == 0:
                    self.folder.log_step(index + 1, loss.item(),
                                         self.optimizer.param_groups[0]["lr"])
                bar.update()
        count = torch.tensor(float(seen), device=self.device)
        self.dist.sum_(total_loss, correct, count)
        mean_loss = (total_loss / count.clamp(min=1)).item()
        self.check_finite(mean_loss, epoch)
        return mean_loss, 100.0 * correct.item() / max(count.item(), 1), t0

    def step(self, images: torch.Tensor, labels: torch.Tensor, flips: torch.Tensor | None,
             model: nn.Module, size: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch, resized to `size` pixels (default: --image-size):
        (loss, logits, labels)."""
        cfg = self.cfg
        x = resize(self.augment(images, self.random.aug, flips), size or cfg.image_size)
        if self.nets.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y, y_b, lam = labels, labels, 1.0
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
        loss, logits = torch.zeros((), device=x.device), []
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
        last = self.folder.checkpoint_path("last") if self.folder else None
        kept = (f"the last good weights (epoch {self.state.epoch}) are in {last}"
                if self.state.epoch and last is not None else "no epoch had finished, so "
                "nothing was kept")
        raise TrainingError(f"{what} in epoch {epoch}; {kept}. Lower --lr or use --amp off")

    def interrupt(self, epoch: int, step: int) -> None:
        """Save everything, say how to resume, and stop (exit code 130 for SIGINT, 143 for
        SIGTERM)."""
        self.check_finite(self.state.partial["loss"], epoch)  # never save weights gone bad
        self.save_last()
        name = signal.Signals(self.stop.signum).name
        launcher = (f"torchrun --nproc-per-node {self.dist.world} (as before) -m "
                    if self.dist.active else "")
        message = (f"stopped by {name} in epoch {epoch} at step {step}/{self.steps_per_epoch}; "
                   f"everything is saved in {self.folder.checkpoint_path('last')}. Resume "
                   f"with: {launcher}{self.folder.resume_command()}")
        self.folder.log(message, echo=False)
        raise TrainingInterrupted(message, self.stop.signum)


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Whole batches only: the last partial one is dropped (a batch of one would break
    BatchNorm)."""
    return max(1, images // batch_size)


def epoch_bar(steps: int, epoch: int, epochs: int, initial: int = 0) -> tqdm:
    """A progress bar over the batches of one epoch, shown only when stderr is a terminal."""
    return tqdm(total=steps, initial=initial, desc=f"epoch {epoch}/{epochs}", leave=False,
                file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True)
