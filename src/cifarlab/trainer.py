"""The training loop: the data on the device, batched augmentation, SGD/AdamW with a per-step
schedule, optional EMA and mixed precision, one-view validation and early stopping.

A `Trainer` builds everything in memory and writes nothing; `fit(folder)` trains into a
`RunFolder` (checkpoints and metrics every epoch). Its whole state is `state_dict()` /
`load_state_dict()`, saved in last.pt every epoch, so that a run resumes exactly.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.augment import Augmenter, mixup
from cifarlab.checkpoint import unwrap
from cifarlab.config import Config
from cifarlab.data import CifarData
from cifarlab.datasets import load_data
from cifarlab.distributed import Dist
from cifarlab.errors import CheckpointError, CifarlabError
from cifarlab.evaluation import compute_metrics
from cifarlab.inference import Classifier, predict_logits, resize
from cifarlab.networks import build_networks
from cifarlab.optim import build_optimizer, build_scheduler, early_parameters, trains_early
from cifarlab.progress import epoch_bar, epoch_line
from cifarlab.runs import (
    RunFolder,
    StopRequest,
    TrainingInterrupted,
    TrainState,
    rng_state,
    set_rng_state,
)
from cifarlab.runtime import (
    amp_dtype,
    autocast,
    compile_blocker,
    eval_batch_size,
    keep_freed_memory,
    release_freed_memory,
    resolve_device,
    use_channels_last,
)
from cifarlab.version import __version__


class TrainingError(CifarlabError):
    """Training cannot go on (e.g. the loss diverged)."""


# --- the trainer --------------------------------------------------------------------------

class Trainer:
    """One Config's training: data, networks, optimizer, schedule, augmentation, state."""

    def __init__(self, cfg: Config, data: CifarData | None = None, dist: Dist | None = None,
                 device: torch.device | None = None, fresh: bool = True):
        self.cfg, self.dist = cfg, dist or Dist()
        self.device = device or resolve_device(cfg.device)
        if cfg.batch_size % self.dist.world:
            raise CifarlabError(f"--batch-size {cfg.batch_size} (the global batch) must divide "
                                f"evenly among {self.dist.world} processes")
        self.local_batch = cfg.batch_size // self.dist.world
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.amp = amp_dtype(cfg.amp, self.device)
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        self.compile_blocker = compile_blocker(self.device) if cfg.compile else None
        self.compiled = cfg.compile and self.compile_blocker is None
        if data is None:
            data = load_data(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_size,
                             cfg.split_seed, cfg.image_size)
        if data.stats and not cfg.pretrained:  # an image folder: its own mean and std,
            cfg.mean = cfg.mean or data.stats[0]  # recorded in config.json
            cfg.std = cfg.std or data.stats[1]
        self.data, self.classes = data.to(self.device), data.classes
        self.has_val = len(self.data.val_images) > 0
        # What the chosen weights are evaluated on at the end: the test set; for an image
        # folder without test/, the validation split (and without either, nothing: refused).
        self.final_split = "test" if self.data.has_test else "val"
        if not self.data.has_test and not self.has_val:
            raise CifarlabError("this dataset has no test/ folder and no validation split: "
                                "nothing to evaluate on; drop --val-size 0 or add test/")
        self.nets = build_networks(cfg, len(self.classes), self.data.train_images, self.device,
                                   self.dist, self.channels_last, fresh,
                                   compiled=self.compiled)
        self.optimizer = build_optimizer(self.nets.model, cfg, len(self.classes), self.amp)
        self.steps_per_epoch = max(1, len(self.data.train_images) // cfg.batch_size)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        # Once their share of the run is over, the early-only parameters (fastnet's whitening
        # bias) stop asking for gradients, as in airbench: the backward then skips the input
        # gradient of the first layers (`90`: full epochs 45 s -> 38-42 s). Not under DDP, whose
        # gradient hooks are set once; there the zero learning rate alone keeps them still.
        self.early = [] if self.dist.active else early_parameters(self.nets.model, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.augment = Augmenter(cfg)
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        # Alternating flip: each image's first-epoch flip is random, then it alternates.
        self.flip_bits = (torch.rand(len(self.data.train_images), generator=self.aug_gen,
                                     device=self.device) < 0.5) if cfg.alternate_flip else None
        if self.dist.rank:  # every process augments its own share with its own draws
            self.aug_gen.manual_seed(cfg.seed + 1 + 1000 * self.dist.rank)
        # Validation sees one view (it only picks the epoch); the test, the run's TTA.
        mean, std = cfg.normalization()
        views = dict(mean=mean, std=std, classes=self.classes, amp=self.amp,
                     channels_last=self.channels_last, image_size=cfg.image_size)
        self.validator = Classifier(self.nets.eval_model, tta="none", **views).to(self.device)
        self.tester = Classifier(self.nets.eval_model, tta=cfg.tta, tta_share=cfg.tta_share,
                                 **views).to(self.device)
        self.state = TrainState()
        self.stop = StopRequest()
        self.on_epoch_end: Callable[[dict[str, Any]], None] | None = None
        self.started = time.perf_counter()
        self.folder: RunFolder | None = None

    # --- state
    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {"order": self.order_gen, "aug": self.aug_gen}

    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        """Everything a run needs to continue exactly. With several processes it is a
        collective call: each one's own part (its augmentation generator, its share of a
        stopped epoch) is gathered into `ranks`."""
        ranks = self.dist.gather({"partial": self.state.partial, "aug": self.aug_gen.get_state()})
        n = self.nets
        return {
            **self.state.state_dict(), "elapsed": self.elapsed(), "ranks": ranks,
            "model": {k: v.detach().cpu() for k, v in unwrap(n.model).state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": n.ema.state_dict() if n.ema is not None else None,
            "flip_bits": self.flip_bits.cpu() if self.flip_bits is not None else None,
            "rng": rng_state(self.generators),
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
        if state["flip_bits"] is not None:
            self.flip_bits = state["flip_bits"].to(self.device)
        set_rng_state(state["rng"], self.generators)
        self.state.load_state_dict(state)
        ranks, rank = state["ranks"], self.dist.rank
        if len(ranks) == self.dist.world:  # the same processes: each takes up its own part
            self.state.partial = ranks[rank]["partial"]
            self.aug_gen.set_state(ranks[rank]["aug"])
        elif ranks[0]["partial"] is not None:
            raise CifarlabError(f"the run was stopped in the middle of an epoch with "
                                f"{len(ranks)} process(es); resume it with as many")
        else:  # another number of processes, at an epoch's end: fresh augmentation draws
            self.state.partial = None
            self.aug_gen.manual_seed(self.cfg.seed + 1 + 1000 * rank + self.state.epoch)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the "val" or "test" split."""
        d = self.data
        return (d.test_images, d.test_labels) if name == "test" else (d.val_images,
                                                                       d.val_labels)

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Put saved weights (best.pt's) into the model that is evaluated."""
        self.nets.eval_model.load_state_dict(state_dict)

    # --- evaluation
    def predict(self, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Logits of the evaluated weights: one view, or with the run's test-time
        augmentation."""
        model = self.tester if tta else self.validator
        return predict_logits(model, images, eval_batch_size(self.cfg.eval_batch_size, self.device))

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        return compute_metrics(self.predict(images), labels, self.classes)

    # --- training
    def fit(self, folder: RunFolder) -> dict[str, Any]:
        """Train the remaining epochs into `folder` (best.pt when validation improves, last.pt
        and a metrics.csv row every epoch). Returns the same summary on every process."""
        cfg, log, self.folder = self.cfg, folder.log, folder
        self.started = time.perf_counter()
        folder.start_metrics(self.state.history)
        params = sum(p.numel() for p in self.nets.model.parameters())
        log(f"cifarlab {__version__}  preset {cfg.preset}  model {cfg.model} "
            f"({params / 1e6:.2f}M parameters)  device {self.device}  "
            f"precision {self.amp or torch.float32}".replace("torch.", "")
            + ("  compiled" if self.compiled else ""))
        if self.compile_blocker:
            log(f"not compiled: {self.compile_blocker}; training without it (slower)")
        test = (f"{len(self.data.test_images)} test images" if self.data.has_test else
                "no test set (no test/ folder): validation only")
        log(f"{cfg.dataset}: {len(self.data.train_images)} train, {len(self.data.val_images)} "
            f"val images, {test}  ->  {folder.path}")
        step = self.state.partial["step"] if self.state.partial else 0
        if self.state.epoch or step:
            log(f"resuming after epoch {self.state.epoch}" + (f" at step {step}" if step else ""))
        if cfg.tensorboard:
            folder.open_tensorboard(self.state.epoch * self.steps_per_epoch + step)
        with self.stop.active():
            for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
                if self.state.early_stopped:
                    break
                self.finish_epoch(epoch, *self.train_epoch(epoch))
        if self.device.type == "cpu":  # the steps' kept memory: the test would only add to it
            release_freed_memory()
        return {"epochs": self.state.epoch, "best_epoch": self.state.best_epoch,
                "best_val_acc": self.state.best_score if self.has_val else None,
                "early_stopped": self.state.early_stopped, "train_seconds": self.elapsed(),
                "run_dir": str(folder.path)}

    def finish_epoch(self, epoch: int, loss: float, acc: float, t0: float) -> None:
        """Validate (rank 0; every process then takes the same decisions), keep the best
        weights, save last.pt, write the epoch's row and line."""
        cfg, folder = self.cfg, self.folder
        val = (self.evaluate(self.data.val_images, self.data.val_labels)
               if self.has_val and self.dist.is_main else None)
        row = self.dist.broadcast(dict(
            epoch=epoch, train_loss=loss, train_acc=acc, val_loss=val and val["loss"],
            val_acc=val and val["top1"], lr=self.optimizer.param_groups[0]["lr"],
            epoch_seconds=time.perf_counter() - t0, elapsed_seconds=self.elapsed()))
        if self.state.record(row, self.has_val, cfg.patience):
            folder.save("best.pt", self.nets.eval_model, cfg, self.classes, epoch=epoch,
                        val_acc=row["val_acc"])
        folder.add_row(row, epoch * self.steps_per_epoch)  # before last.pt: a redone epoch
        self.save_last()                                   # rewrites its events
        eta = row["elapsed_seconds"] / epoch * (cfg.epochs - epoch)
        folder.log(epoch_line(row, cfg.epochs, eta))
        if self.on_epoch_end is not None:  # e.g. a tuning trial reports and may prune
            self.on_epoch_end(row)
        if self.state.early_stopped:
            folder.log(f"early stop: no better validation accuracy for {cfg.patience} epochs")

    def save_last(self) -> None:
        """last.pt: the weights to use and the whole state (called by every process)."""
        state = self.state_dict()
        val_acc = self.state.history[-1]["val_acc"] if self.state.history else None
        self.folder.save("last.pt", self.nets.eval_model, self.cfg, self.classes,
                         epoch=self.state.epoch, val_acc=val_acc, resume=state)

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over a fresh permutation of the training set: (mean loss, accuracy %,
        start time)."""
        t0 = time.perf_counter()
        cfg, model = self.cfg, self.nets.train_model
        model.train()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        if self.state.partial is None:
            # Drop the last partial batch: a batch of one would break BatchNorm.
            n = len(self.data.train_images)
            order = torch.randperm(n, generator=self.order_gen).to(self.device)
            first, seen = 0, 0
        else:  # resuming an epoch a signal stopped
            p, self.state.partial = self.state.partial, None
            order, first, seen = p["order"].to(self.device), p["step"], p["seen"]
            total_loss += p["loss"]
            correct += p["correct"]
        size = cfg.epoch_size(epoch)  # scaled-down images early on (fewer pixels to train)
        with epoch_bar(self.steps_per_epoch, epoch, cfg.epochs, first) as bar:
            for step in range(first, self.steps_per_epoch):
                if self.should_stop(step, total_loss, epoch):
                    self.state.partial = dict(order=order.cpu(), step=step, seen=seen,
                                              loss=total_loss.item(), correct=correct.item())
                    self.interrupt(epoch, step)
                # This process's share of the global batch (all of it in a single process).
                start = step * cfg.batch_size + self.dist.rank * self.local_batch
                idx = order[start:start + self.local_batch]
                flips = None if self.flip_bits is None else self.flip_bits[idx] ^ (epoch % 2 == 0)
                index = (epoch - 1) * self.steps_per_epoch + step  # steps of the run before
                for p in self.early:
                    p.requires_grad_(trains_early(cfg, index, self.steps_per_epoch))
                loss, logits, y = self.step(self.data.train_images[idx],
                                            self.data.train_labels[idx], flips, model, size)
                total_loss += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
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
        x = resize(self.augment(images, self.aug_gen, flips), size or cfg.image_size)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y, y_b, lam = labels, labels, 1.0
        if cfg.mixup_alpha > 0:
            x, y, y_b, lam = mixup(x, y, cfg.mixup_alpha, self.aug_gen)
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
        n = -(-len(x) // (cfg.micro_batch or len(x)))
        pieces = list(zip(x.tensor_split(n), y.tensor_split(n), y_b.tensor_split(n),
                          strict=True))
        loss, logits = torch.zeros((), device=x.device), []
        for i, (xi, yi, bi) in enumerate(pieces):
            # Under DDP, gradients are averaged over processes once, after the last piece.
            last = i == len(pieces) - 1
            sync = contextlib.nullcontext() if last else getattr(model, "no_sync",
                                                                 contextlib.nullcontext)()
            with sync:
                with autocast(self.device, self.amp):
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
            where = self.folder.last if self.folder else "last.pt"
            raise TrainingError(
                f"the training loss became {loss} in epoch {epoch}; the last good weights "
                f"(epoch {self.state.epoch}) are in {where}. Lower --lr or use --amp off")

    def interrupt(self, epoch: int, step: int) -> None:
        """Save everything, say how to resume, and stop (exit code 130 for SIGINT, 143 for
        SIGTERM)."""
        self.check_finite(self.state.partial["loss"], epoch)  # never save weights gone bad
        self.save_last()
        path = self.folder.path
        name = signal.Signals(self.stop.signum).name
        launcher = (f"torchrun --nproc-per-node {self.dist.world} (as before) -m "
                    if self.dist.active else "")
        message = (f"stopped by {name} in epoch {epoch} at step {step}/{self.steps_per_epoch}; "
                   f"everything is saved in {self.folder.last}. Resume with: "
                   f"{launcher}cifarlab train --resume {path}")
        self.folder.log(message, echo=False)
        raise TrainingInterrupted(message, self.stop.signum)
