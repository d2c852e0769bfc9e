"""Training: the data on the device, batched augmentation, SGD/AdamW with a per-step schedule,
optional EMA and mixed precision, early stopping on validation accuracy, then one test evaluation
of the chosen (best-validation) weights."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import cifarlab
from cifarlab.augment import Augmenter, mixup, normalize, to_float
from cifarlab.checkpoint import load_checkpoint, save_checkpoint
from cifarlab.config import Config, make_config
from cifarlab.data import CifarData, default_data_dir, load_cifar
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import compute_metrics, format_per_class, predict_logits
from cifarlab.models import create_model
from cifarlab.progress import MetricsCSV, RunLog, epoch_bar, epoch_line, format_duration
from cifarlab.runtime import (
    amp_dtype,
    autocast,
    resolve_device,
    seed_everything,
    use_channels_last,
)


class TrainingError(CifarlabError):
    """Training cannot go on (e.g. the loss diverged)."""


def lr_factor(cfg: Config, t: float) -> float:
    """Learning-rate multiplier at time `t`, measured in epochs (fractional within an epoch)."""
    if cfg.schedule == "onecycle":  # linear up over warmup_epochs, then linear down to 0
        if t < cfg.warmup_epochs:
            return t / cfg.warmup_epochs
        return max(0.0, (cfg.epochs - t) / max(cfg.epochs - cfg.warmup_epochs, 1e-8))
    warm = min(1.0, t / cfg.warmup_epochs) if cfg.warmup_epochs else 1.0
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * t / (cfg.t_max or cfg.epochs)))
    if cfg.schedule == "step":
        return warm * cfg.gamma ** math.floor(t / cfg.step_size)
    return warm


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Two parameter groups: conv/linear weights, and norm weights and biases, which can have
    their own learning rate (same decay per step) or no weight decay at all."""
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    others = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    scale = cfg.norm_bias_lr_scale
    groups = [{"params": weights, "weight_decay": cfg.weight_decay},
              {"params": others, "lr": cfg.lr * scale,
               "weight_decay": cfg.weight_decay / scale if cfg.decay_norm_and_bias else 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def make_run_dir(cfg: Config) -> Path:
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if (run_dir / "metrics.csv").exists():
            raise CifarlabError(f"{run_dir} already holds a run; choose another --run-dir")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{stamp}-{cfg.preset}"
        n = 1
        while run_dir.exists():  # two runs started in the same second
            n += 1
            run_dir = Path("runs") / f"{stamp}-{cfg.preset}-{n}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CifarlabError(f"cannot create run folder {run_dir}: {e.strerror}") from None
    return run_dir


class Trainer:
    """One training run of one Config, writing into one run folder."""

    def __init__(self, cfg: Config, data: CifarData | None = None, quiet: bool = False):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
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

        self.run_dir = make_run_dir(cfg)
        self.log = RunLog(self.run_dir / "train.log", quiet)
        self.csv = MetricsCSV(self.run_dir / "metrics.csv")
        (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, saved and tested: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over a fresh permutation of the training set: (mean loss, accuracy %)."""
        cfg, model = self.cfg, self.train_model
        model.train()
        n = len(self.data.train_images)
        # Drop the last partial batch: a batch of one would break BatchNorm.
        order = torch.randperm(n, generator=self.order_gen).to(self.device)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        with epoch_bar(self.steps_per_epoch, epoch, cfg.epochs) as bar:
            for step in range(self.steps_per_epoch):
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
        mean_loss = (total_loss / max(seen, 1)).item()  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"the training loss became {mean_loss} in epoch {epoch}; the last good weights "
                f"are in {self.run_dir / 'last.pt'}. Lower --lr or use --amp off")
        return mean_loss, 100.0 * correct.item() / max(seen, 1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.eval_model, images, self.cfg.mean, self.cfg.std,
                              self.cfg.eval_batch_size, self.amp, self.channels_last,
                              self.cfg.tta)

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        return compute_metrics(self.logits(images), labels, self.classes)

    def save(self, name: str, epoch: int, val_acc: float | None) -> None:
        save_checkpoint(self.run_dir / name, self.eval_model, self.cfg.to_dict(), self.classes,
                        epoch=epoch, val_acc=val_acc)

    def fit(self) -> dict[str, Any]:
        cfg, log = self.cfg, self.log
        start = time.perf_counter()
        params = sum(p.numel() for p in self.model.parameters())
        log(f"cifarlab {cifarlab.__version__}  preset {cfg.preset}  model {cfg.model} "
            f"({params / 1e6:.2f}M parameters)  device {self.device}  "
            f"precision {self.amp or torch.float32}".replace("torch.", ""))
        log(f"{cfg.dataset}: {len(self.data.train_images)} train, {len(self.data.val_images)} "
            f"val, {len(self.data.test_images)} test images  ->  {self.run_dir}")
        has_val = len(self.data.val_images) > 0
        best_acc, best_epoch, bad_epochs, epoch = -1.0, 0, 0, 0
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            loss, acc = self.train_epoch(epoch)
            val = self.evaluate(self.data.val_images, self.data.val_labels) if has_val else None
            row = dict(epoch=epoch, train_loss=loss, train_acc=acc,
                       val_loss=val and val["loss"], val_acc=val and val["top1"],
                       lr=self.optimizer.param_groups[0]["lr"],
                       epoch_seconds=time.perf_counter() - t0,
                       elapsed_seconds=time.perf_counter() - start)
            self.save("last.pt", epoch, row["val_acc"])
            # Without a validation split the last epoch is the chosen one: never the test set.
            score = row["val_acc"] if has_val else float(epoch)
            if score > best_acc:
                best_acc, best_epoch, bad_epochs = score, epoch, 0
                self.save("best.pt", epoch, row["val_acc"])
            else:
                bad_epochs += 1
            self.csv.add(row)
            eta = row["elapsed_seconds"] / epoch * (cfg.epochs - epoch)
            log(epoch_line(row, cfg.epochs, eta))
            if has_val and cfg.patience and bad_epochs >= cfg.patience:
                log(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                break
        train_seconds = time.perf_counter() - start
        return self.finish(epoch, best_epoch, best_acc if has_val else None, train_seconds,
                           start)

    def finish(self, epochs_run: int, best_epoch: int, best_val: float | None,
               train_seconds: float, start: float) -> dict[str, Any]:
        """Evaluate the best checkpoint once on the test set and write metrics.json."""
        self.eval_model.load_state_dict(load_checkpoint(self.run_dir / "best.pt")["state_dict"])
        logits = self.logits(self.data.test_images)
        test = compute_metrics(logits, self.data.test_labels, self.classes)
        metrics = {
            "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
            "per_class": test["per_class"], "confusion": test["confusion"],
            "classes": self.classes, "best_epoch": best_epoch, "best_val_acc": best_val,
            "epochs": epochs_run, "train_seconds": train_seconds,
            "total_seconds": time.perf_counter() - start, "device": str(self.device),
            "device_name": device_name(self.device), "torch_version": torch.__version__,
            "cifarlab_version": cifarlab.__version__, "preset": self.cfg.preset,
            "model": self.cfg.model, "seed": self.cfg.seed, "run_dir": str(self.run_dir),
        }
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
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
