"""Training: the data on the device, batched augmentation, SGD/AdamW with a per-step schedule,
optional EMA and mixed precision, early stopping on validation accuracy, then one test evaluation
of the chosen (best-validation) weights. Every epoch ends with last.pt holding all a run needs to
resume exactly (`cifarlab train --resume RUN_DIR`); Ctrl-C and SIGTERM save at the next step."""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import cifarlab
from cifarlab.augment import Augmenter, mixup, normalize, to_float
from cifarlab.checkpoint import load_checkpoint, save_checkpoint
from cifarlab.config import Config, make_config
from cifarlab.data import CifarData, default_data_dir, load_cifar
from cifarlab.distributed import init_distributed
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import compute_metrics, format_per_class, predict_logits
from cifarlab.models import create_model
from cifarlab.optim import build_optimizer, lr_factor
from cifarlab.progress import (
    MetricsCSV,
    RunLog,
    epoch_bar,
    epoch_line,
    format_duration,
    write_text,
)
from cifarlab.runs import (
    RunLock,
    StopRequest,
    TrainingInterrupted,
    load_resume_state,
    make_run_dir,
    resume_state,
)
from cifarlab.runtime import (
    amp_dtype,
    autocast,
    resolve_device,
    seed_everything,
    use_channels_last,
)


class TrainingError(CifarlabError):
    """Training cannot go on (e.g. the loss diverged)."""


class Trainer:
    """One training run of one Config, writing into one run folder."""

    def __init__(self, cfg: Config, data: CifarData | None = None, quiet: bool = False,
                 resume_dir: str | os.PathLike | None = None):
        self.cfg = cfg
        self.dist, self.device = init_distributed(resolve_device(cfg.device))
        if cfg.batch_size % self.dist.world:
            raise CifarlabError(f"--batch-size {cfg.batch_size} (the global batch) must divide "
                                f"evenly among {self.dist.world} processes")
        self.local_batch = cfg.batch_size // self.dist.world
        # The folder first: a clash is refused before any work, and the lock comes before
        # anything is written there. Only rank 0 writes it.
        self.run_dir = Path(resume_dir) if resume_dir else None
        self.lock = None
        if self.dist.is_main:
            self.run_dir = self.run_dir or make_run_dir(cfg.run_dir, cfg.preset)
            self.lock = RunLock(self.run_dir).acquire()
        self.run_dir = Path(self.dist.broadcast(str(self.run_dir)))
        try:
            self.build(cfg, data, quiet, resume_dir)
        except BaseException:  # e.g. missing data: leave the folder free for the next try
            if self.lock:
                self.lock.release()
            raise

    def build(self, cfg: Config, data: CifarData | None, quiet: bool,
              resume_dir: str | os.PathLike | None) -> None:
        """Data, model, optimizer and state: everything but the run folder."""
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.amp = amp_dtype(cfg.amp, self.device)
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        if data is None:
            data = load_cifar(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_size,
                              cfg.split_seed)
        self.data = data.to(self.device)
        self.classes = data.classes

        seed_everything(cfg.seed)
        self.model = create_model(cfg.model, len(self.classes), **cfg.model_args).to(self.device)
        if hasattr(self.model, "init_from_data"):  # e.g. fastnet's patch-whitening layer
            sample = self.data.train_images[:5000]
            self.model.init_from_data(normalize(to_float(sample), cfg.mean, cfg.std))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_model = self.model
        if self.dist.active:  # gradients averaged over processes; rank 0's weights to start
            if cfg.sync_bn:
                if self.device.type != "cuda":
                    raise CifarlabError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on "
                                        "GPUs only; drop it on the CPU")
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                  use_buffers=True) if cfg.ema_decay else None)
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = max(1, len(self.data.train_images) // cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(cfg, step / self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler(enabled=self.amp == torch.float16)
        self.augment = Augmenter(cfg)
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        # Alternating flip: each image's first-epoch flip is random, then it alternates.
        self.flip_bits = (torch.rand(len(self.data.train_images), generator=self.aug_gen,
                                     device=self.device) < 0.5) if cfg.alternate_flip else None
        if self.dist.rank:  # every process augments its own share with its own draws
            self.aug_gen.manual_seed(cfg.seed + 1 + 1000 * self.dist.rank)

        # Progress, all of it saved in last.pt so that a run can resume exactly.
        self.epoch = 0  # finished epochs
        self.partial: dict[str, Any] | None = None  # an epoch stopped part-way by a signal
        self.best_score, self.best_epoch, self.bad_epochs = -1.0, 0, 0
        self.early_stopped = False
        self.history: list[dict[str, Any]] = []  # metrics.csv's rows
        self.elapsed = 0.0  # training seconds before this process
        self.stop = StopRequest()
        self.on_epoch_end: Callable[[dict[str, Any]], None] | None = None

        if resume_dir:
            load_resume_state(self, load_checkpoint(self.run_dir / "last.pt"))
        elif self.dist.is_main:
            write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.log = RunLog(self.run_dir / "train.log", quiet, enabled=self.dist.is_main)
        self.csv = MetricsCSV(self.run_dir / "metrics.csv", self.history,
                              enabled=self.dist.is_main)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, saved and tested: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over a fresh permutation of the training set: (mean loss, accuracy %)."""
        cfg, model = self.cfg, self.train_model
        model.train()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        if self.partial is None:
            # Drop the last partial batch: a batch of one would break BatchNorm.
            n = len(self.data.train_images)
            order = torch.randperm(n, generator=self.order_gen).to(self.device)
            first, seen = 0, 0
        else:  # resuming an epoch a signal stopped
            p, self.partial = self.partial, None
            order, first, seen = p["order"].to(self.device), p["step"], p["seen"]
            total_loss += p["loss"]
            correct += p["correct"]
        with epoch_bar(self.steps_per_epoch, epoch, cfg.epochs, first) as bar:
            for step in range(first, self.steps_per_epoch):
                if self.should_stop(step, total_loss, epoch):
                    self.partial = dict(order=order.cpu(), step=step, loss=total_loss.item(),
                                        correct=correct.item(), seen=seen)
                    self.interrupt(epoch, step)
                # This process's share of the global batch (all of it in a single process).
                start = step * cfg.batch_size + self.dist.rank * self.local_batch
                idx = order[start:start + self.local_batch]
                flips = None if self.flip_bits is None else self.flip_bits[idx] ^ (epoch % 2 == 0)
                x = self.augment(self.data.train_images[idx], self.aug_gen, flips)
                y = self.data.train_labels[idx]
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y_b, lam = y, 1.0
                if cfg.mixup_alpha > 0:
                    x, y, y_b, lam = mixup(x, y, cfg.mixup_alpha, self.aug_gen)
                with autocast(self.device, self.amp):
                    logits = model(x)
                    loss = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                    if lam < 1.0:
                        loss = loss + (1 - lam) * F.cross_entropy(
                            logits, y_b, label_smoothing=cfg.label_smoothing)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                total_loss += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                bar.update()
        count = torch.tensor(float(seen), device=self.device)
        self.dist.sum_(total_loss, correct, count)
        mean_loss = (total_loss / count.clamp(min=1)).item()
        self.check_finite(mean_loss, epoch)
        return mean_loss, 100.0 * correct.item() / max(count.item(), 1)

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
            raise TrainingError(
                f"the training loss became {loss} in epoch {epoch}; the last good weights "
                f"(epoch {self.epoch}) are in {self.run_dir / 'last.pt'}. Lower --lr or use "
                "--amp off")

    def interrupt(self, epoch: int, step: int) -> None:
        """Save everything, say how to resume, and stop (exit code 130 for SIGINT, 143 for
        SIGTERM)."""
        self.check_finite(self.partial["loss"], epoch)  # never save weights gone bad
        self.save_last()
        name = signal.Signals(self.stop.signum).name
        launcher = (f"torchrun --nproc-per-node {self.dist.world} (as before) -m "
                    if self.dist.active else "")
        message = (f"stopped by {name} in epoch {epoch} at step {step}/{self.steps_per_epoch}; "
                   f"everything is saved in {self.run_dir / 'last.pt'}. Resume with: "
                   f"{launcher}cifarlab train --resume {self.run_dir}")
        self.log(message, echo=False)
        raise TrainingInterrupted(message, self.stop.signum)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.eval_model, images, self.cfg.mean, self.cfg.std,
                              self.cfg.eval_batch_size, self.amp, self.channels_last,
                              self.cfg.tta)

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        return compute_metrics(self.logits(images), labels, self.classes)

    def save_best(self, val_acc: float | None) -> None:
        save_checkpoint(self.run_dir / "best.pt", self.eval_model, self.cfg.to_dict(),
                        self.classes, epoch=self.epoch, val_acc=val_acc)

    def save_last(self) -> None:
        """last.pt: the weights to use plus the whole state a resumed run continues from.
        Called by every process: each one's own part (its augmentation generator, its share
        of a stopped epoch) is gathered to rank 0, which writes the file."""
        ranks = self.dist.gather({"partial": self.partial, "aug": self.aug_gen.get_state()})
        if not self.dist.is_main:
            return
        val_acc = self.history[-1]["val_acc"] if self.history else None
        save_checkpoint(self.run_dir / "last.pt", self.eval_model, self.cfg.to_dict(),
                        self.classes, epoch=self.epoch, val_acc=val_acc,
                        resume=resume_state(self, ranks))

    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {"order": self.order_gen, "aug": self.aug_gen}

    def fit(self, test: bool = True) -> dict[str, Any]:
        """Train the remaining epochs, then test the chosen weights once (not with
        `test=False`, as in a hyperparameter search). Releases the lock."""
        self.started = time.perf_counter()
        together = False  # whether every process leaves by the same path
        try:
            with self.stop.active():
                metrics = self._fit(test)
            together = True
            return metrics
        except TrainingInterrupted:
            together = True  # the processes decided to stop together
            raise
        finally:
            if self.lock:
                self.lock.release()
            self.dist.close(together)

    def _fit(self, test: bool) -> dict[str, Any]:
        cfg, log = self.cfg, self.log
        params = sum(p.numel() for p in self.model.parameters())
        log(f"cifarlab {cifarlab.__version__}  preset {cfg.preset}  model {cfg.model} "
            f"({params / 1e6:.2f}M parameters)  device {self.device}  "
            f"precision {self.amp or torch.float32}".replace("torch.", ""))
        log(f"{cfg.dataset}: {len(self.data.train_images)} train, {len(self.data.val_images)} "
            f"val, {len(self.data.test_images)} test images  ->  {self.run_dir}")
        if self.epoch or self.partial:
            where = f" at step {self.partial['step']}" if self.partial else ""
            log(f"resuming after epoch {self.epoch}{where}")
        has_val = len(self.data.val_images) > 0
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            if self.early_stopped:
                break
            t0 = time.perf_counter()
            loss, acc = self.train_epoch(epoch)
            # Validation on rank 0 only; every process then takes the same decisions from it.
            val = (self.evaluate(self.data.val_images, self.data.val_labels)
                   if has_val and self.dist.is_main else None)
            elapsed = self.elapsed + time.perf_counter() - self.started
            row = self.dist.broadcast(dict(
                epoch=epoch, train_loss=loss, train_acc=acc, val_loss=val and val["loss"],
                val_acc=val and val["top1"], lr=self.optimizer.param_groups[0]["lr"],
                epoch_seconds=time.perf_counter() - t0, elapsed_seconds=elapsed))
            self.epoch = epoch
            self.history.append(row)
            # Without a validation split the last epoch is the chosen one: never the test set.
            score = row["val_acc"] if has_val else float(epoch)
            if score > self.best_score:
                self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
                if self.dist.is_main:
                    self.save_best(row["val_acc"])
            else:
                self.bad_epochs += 1
            self.early_stopped = bool(has_val and cfg.patience
                                      and self.bad_epochs >= cfg.patience)
            self.save_last()
            self.csv.add(row)
            log(epoch_line(row, cfg.epochs, elapsed / epoch * (cfg.epochs - epoch)))
            if self.on_epoch_end is not None:  # e.g. a tuning trial reports and may prune
                self.on_epoch_end(row)
            if self.early_stopped:
                log(f"early stop: no better validation accuracy for {cfg.patience} epochs")
        train_seconds = self.elapsed + time.perf_counter() - self.started
        metrics = None
        best_val = self.best_score if has_val else None
        if self.dist.is_main and not test:
            metrics = dict(best_epoch=self.best_epoch, best_val_acc=best_val, epochs=self.epoch,
                           train_seconds=train_seconds, run_dir=str(self.run_dir),
                           test="not evaluated: the test set is kept out of the search")
            write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        elif self.dist.is_main:  # the test set is evaluated once, by rank 0
            metrics = self.finish(self.epoch, self.best_epoch, best_val, train_seconds)
        return self.dist.broadcast(metrics)

    def finish(self, epochs_run: int, best_epoch: int, best_val: float | None,
               train_seconds: float) -> dict[str, Any]:
        """Evaluate the best checkpoint once on the test set and write metrics.json."""
        t_test = time.perf_counter()
        self.eval_model.load_state_dict(load_checkpoint(self.run_dir / "best.pt")["state_dict"])
        logits = self.logits(self.data.test_images)
        test = compute_metrics(logits, self.data.test_labels, self.classes)
        metrics = {
            "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
            "per_class": test["per_class"], "confusion": test["confusion"],
            "classes": self.classes, "best_epoch": best_epoch, "best_val_acc": best_val,
            "epochs": epochs_run, "train_seconds": train_seconds,
            "total_seconds": train_seconds + time.perf_counter() - t_test,
            "device": str(self.device),
            "device_name": device_name(self.device), "torch_version": torch.__version__,
            "cifarlab_version": cifarlab.__version__, "preset": self.cfg.preset,
            "model": self.cfg.model, "seed": self.cfg.seed, "run_dir": str(self.run_dir),
        }
        write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        chosen = (f"epoch {best_epoch}, val {best_val:.2f}%" if best_val is not None
                  else f"last epoch {best_epoch}, no validation split")
        self.log(f"test accuracy {test['top1']:.2f}% (top-5 {test['top5']:.2f}%) of the "
                 f"chosen weights ({chosen}); trained in {format_duration(train_seconds)}")
        self.log(format_per_class(test))
        saved = "best.pt, last.pt, metrics.json, metrics.csv"
        if self.cfg.report:
            saved += self.write_report(logits)
        self.log(f"saved {self.run_dir}/{saved}")
        return metrics

    def write_report(self, logits: torch.Tensor) -> str:
        """Pictures and report.html; a failure here is reported but loses nothing."""
        from cifarlab.report import PICTURES, write_report

        try:
            write_report(self.run_dir, self.data.test_images, self.data.test_labels, logits,
                         self.classes)
        except Exception as e:  # the run itself is saved; the report can be redrawn later
            self.log(f"report not written ({type(e).__name__}: {e}); "
                     f"retry with: cifarlab report {self.run_dir}")
            return ""
        return ", report.html, " + ", ".join(PICTURES)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def train(config: Config | None = None, *, preset: str | None = None,
          config_file: str | os.PathLike | None = None, quiet: bool = False,
          **overrides: Any) -> dict[str, Any]:
    """Train a model and evaluate it on the test set; returns metrics.json's content.

    Either pass a Config, or a preset name / config file / field overrides, e.g.
    `train(preset="seed", epochs=5, data_dir="../shared/data")`.
    """
    cfg = config.validate() if config else make_config(preset, config_file, **overrides)
    if cfg.data_dir is None:
        cfg.data_dir = str(default_data_dir())
    return Trainer(cfg, quiet=quiet).fit()
