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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import cifarlab
from cifarlab.augment import Augmenter, mixup, normalize, to_float
from cifarlab.checkpoint import load_checkpoint, save_checkpoint, unwrap
from cifarlab.config import Config, make_config
from cifarlab.data import CifarData, default_data_dir, load_cifar
from cifarlab.errors import CheckpointError, CifarlabError
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
    make_run_dir,
    rng_state,
    set_rng_state,
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
        self.device = resolve_device(cfg.device)
        # The folder first: a clash is refused before any work, and the lock comes before
        # anything is written there.
        self.run_dir = Path(resume_dir) if resume_dir else make_run_dir(cfg.run_dir, cfg.preset)
        self.lock = RunLock(self.run_dir).acquire()
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
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
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

        # Progress, all of it saved in last.pt so that a run can resume exactly.
        self.epoch = 0  # finished epochs
        self.partial: dict[str, Any] | None = None  # an epoch stopped part-way by a signal
        self.best_score, self.best_epoch, self.bad_epochs = -1.0, 0, 0
        self.early_stopped = False
        self.history: list[dict[str, Any]] = []  # metrics.csv's rows
        self.elapsed = 0.0  # training seconds before this process
        self.stop = StopRequest()

        if resume_dir:
            self.load_resume_state(load_checkpoint(self.run_dir / "last.pt"))
        else:
            write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.log = RunLog(self.run_dir / "train.log", quiet)
        self.csv = MetricsCSV(self.run_dir / "metrics.csv", self.history)

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
                if self.stop.signum is not None:
                    self.partial = dict(order=order.cpu(), step=step, loss=total_loss.item(),
                                        correct=correct.item(), seen=seen)
                    self.interrupt(epoch, step)
                if step % 100 == 99:  # a host sync now and then: stop soon after a NaN
                    self.check_finite(total_loss.item(), epoch)
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
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
        mean_loss = (total_loss / max(seen, 1)).item()
        self.check_finite(mean_loss, epoch)
        return mean_loss, 100.0 * correct.item() / max(seen, 1)

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
        message = (f"stopped by {name} in epoch {epoch} at step {step}/{self.steps_per_epoch}; "
                   f"everything is saved in {self.run_dir / 'last.pt'}. Resume with: "
                   f"cifarlab train --resume {self.run_dir}")
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
        """last.pt: the weights to use plus the whole state a resumed run continues from."""
        val_acc = self.history[-1]["val_acc"] if self.history else None
        save_checkpoint(self.run_dir / "last.pt", self.eval_model, self.cfg.to_dict(),
                        self.classes, epoch=self.epoch, val_acc=val_acc,
                        resume=self.resume_state())

    def resume_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "partial": self.partial, "history": self.history,
            "best_score": self.best_score, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "early_stopped": self.early_stopped,
            "elapsed": self.elapsed + time.perf_counter() - self.started,
            "model": {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "flip_bits": self.flip_bits.cpu() if self.flip_bits is not None else None,
            "rng": rng_state(self.generators),
        }

    def load_resume_state(self, ckpt: dict[str, Any]) -> None:
        r = ckpt.get("resume")
        if r is None:
            raise CheckpointError(f"{self.run_dir / 'last.pt'} holds no resume state")
        try:
            unwrap(self.model).load_state_dict(r["model"])
            if self.ema is not None:
                self.ema.load_state_dict(r["ema"])
            self.optimizer.load_state_dict(r["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{self.run_dir / 'last.pt'} does not fit this run's model "
                                  f"and settings: {first}") from None
        self.scheduler.load_state_dict(r["scheduler"])
        self.scaler.load_state_dict(r["scaler"])
        if r["flip_bits"] is not None:
            self.flip_bits = r["flip_bits"].to(self.device)
        set_rng_state(r["rng"], self.generators)
        self.epoch, self.partial, self.history = r["epoch"], r["partial"], r["history"]
        self.best_score, self.best_epoch = r["best_score"], r["best_epoch"]
        self.bad_epochs, self.early_stopped = r["bad_epochs"], r["early_stopped"]
        self.elapsed = r["elapsed"]

    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {"order": self.order_gen, "aug": self.aug_gen}

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, then test the chosen weights once. Releases the lock."""
        self.started = time.perf_counter()
        try:
            with self.stop.active():
                return self._fit()
        finally:
            self.lock.release()

    def _fit(self) -> dict[str, Any]:
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
            val = self.evaluate(self.data.val_images, self.data.val_labels) if has_val else None
            elapsed = self.elapsed + time.perf_counter() - self.started
            row = dict(epoch=epoch, train_loss=loss, train_acc=acc,
                       val_loss=val and val["loss"], val_acc=val and val["top1"],
                       lr=self.optimizer.param_groups[0]["lr"],
                       epoch_seconds=time.perf_counter() - t0, elapsed_seconds=elapsed)
            self.epoch = epoch
            self.history.append(row)
            # Without a validation split the last epoch is the chosen one: never the test set.
            score = row["val_acc"] if has_val else float(epoch)
            if score > self.best_score:
                self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
                self.save_best(row["val_acc"])
            else:
                self.bad_epochs += 1
            self.early_stopped = bool(has_val and cfg.patience
                                      and self.bad_epochs >= cfg.patience)
            self.save_last()
            self.csv.add(row)
            log(epoch_line(row, cfg.epochs, elapsed / epoch * (cfg.epochs - epoch)))
            if self.early_stopped:
                log(f"early stop: no better validation accuracy for {cfg.patience} epochs")
        train_seconds = self.elapsed + time.perf_counter() - self.started
        return self.finish(self.epoch, self.best_epoch,
                           self.best_score if has_val else None, train_seconds)

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


RESUME_OVERRIDES = ("device", "num_threads", "data_dir")  # where it runs, not what it computes


def resume(run_dir: str | os.PathLike, quiet: bool = False, **overrides: Any) -> dict[str, Any]:
    """Continue a stopped run from its last.pt with the run's own settings; only where it runs
    (device, threads, data folder) may change."""
    run_dir = Path(run_dir)
    unknown = set(overrides) - set(RESUME_OVERRIDES)
    if unknown:
        raise CifarlabError(f"--resume continues with the run's own settings; only "
                            f"{', '.join(_flag(k) for k in RESUME_OVERRIDES)} may be given, "
                            f"not {', '.join(sorted(_flag(k) for k in unknown))}")
    if (run_dir / "metrics.json").exists():
        raise CifarlabError(f"{run_dir} finished already (it has metrics.json); nothing to resume")
    if not (run_dir / "last.pt").is_file():
        raise CifarlabError(f"{run_dir} holds no last.pt to resume from; is it a run folder "
                            "whose first epoch finished?")
    saved = load_checkpoint(run_dir / "last.pt")["config"]
    cfg = make_config(**{**saved, **overrides})
    return Trainer(cfg, quiet=quiet, resume_dir=run_dir).fit()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
