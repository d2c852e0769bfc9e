"""Evaluation: logits for a set of images, then top-1/top-5, per-class accuracy and confusion."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.augment import normalize, to_float
from cifarlab.runtime import amp_dtype, autocast, resolve_device, use_channels_last


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits averaged over test-time views: the image and its mirror (flip), and for
    flip-translate also both shifted one pixel up-left and down-right (reflect-padded)."""
    if tta == "none":
        return model(x).float()
    logits = 0.5 * (model(x).float() + model(x.flip(3)).float())
    if tta == "flip-translate":
        padded = F.pad(x, (1,) * 4, mode="reflect")
        h, w = x.shape[2:]
        shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
        logits = 0.5 * logits + 0.25 * sum(tta_logits(model, s, "flip") for s in shifted)
    return logits


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, mean: Sequence[float],
                   std: Sequence[float], batch_size: int = 1000,
                   amp: torch.dtype | None = None, channels_last: bool = False,
                   tta: str = "none") -> torch.Tensor:
    """Float32 logits of uint8 images (N, 3, 32, 32), on the device the model is on."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(to_float(images[start:start + batch_size].to(device)), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out.append(tta_logits(model, x, tta))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0, device=device)


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor,
                    classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy in percent; `confusion[i][j]` counts images of class i predicted as j."""
    labels = labels.to(logits.device)
    n, k = len(classes), min(5, len(classes))
    pred = logits.argmax(1)
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(1)
    confusion = torch.bincount(labels * n + pred, minlength=n * n).view(n, n).cpu()
    support = confusion.sum(1)
    per_class = {c: (100.0 * confusion[i, i].item() / support[i].item()) if support[i] else None
                 for i, c in enumerate(classes)}
    return {
        "top1": 100.0 * (pred == labels).float().mean().item(),
        "top5": 100.0 * top5.float().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "count": len(labels),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": list(classes),
    }


def for_inference(model: nn.Module, cfg: dict[str, Any], device: torch.device
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """The model on `device` in the run's precision and memory format, as training evaluated
    it; returns it and the matching `predict_logits` keywords (amp, channels_last)."""
    model = model.to(device).eval()
    channels_last = use_channels_last(cfg.get("channels_last"), device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, dict(amp=amp_dtype(cfg.get("amp", "off"), device), channels_last=channels_last)


def predict_split(checkpoint: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                  split: str = "test", batch_size: int | None = None, device: str = "auto",
                  download: bool = True, tta: str | None = None) -> dict[str, Any]:
    """A checkpoint's logits on the test (or validation) images, with the images, labels and
    checkpoint. Test-time augmentation, precision and batch size default to the run's own."""
    from cifarlab.checkpoint import load_checkpoint, model_from_checkpoint
    from cifarlab.data import load_cifar

    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    dev = resolve_device(device)
    data = load_cifar(cfg["dataset"], data_dir if data_dir is not None else cfg["data_dir"],
                      download, cfg["val_size"], cfg["split_seed"])
    images, labels = {"test": (data.test_images, data.test_labels),
                      "val": (data.val_images, data.val_labels)}[split]
    model, fast = for_inference(model_from_checkpoint(state), cfg, dev)
    tta = tta or cfg.get("tta", "none")
    logits = predict_logits(model, images, state["mean"], state["std"],
                            batch_size or cfg["eval_batch_size"], tta=tta, **fast)
    return dict(state=state, images=images, labels=labels, logits=logits.cpu(), tta=tta,
                device=str(dev))


def evaluate(checkpoint: str | os.PathLike, data_dir: str | os.PathLike | None = None,
             split: str = "test", batch_size: int | None = None, device: str = "auto",
             download: bool = True, tta: str | None = None) -> dict[str, Any]:
    """Evaluate a run folder or checkpoint on the test set (or `split="val"`, as in training).
    Test-time augmentation, precision and batch size default to the run's own settings."""
    p = predict_split(checkpoint, data_dir, split, batch_size, device, download, tta)
    metrics = compute_metrics(p["logits"], p["labels"], p["state"]["classes"])
    metrics.update(split=split, checkpoint=str(checkpoint), device=p["device"], tta=p["tta"])
    return metrics


MANY_CLASSES = 20  # above this (CIFAR-100), tables show the extremes, not every class


def format_per_class(metrics: dict[str, Any]) -> str:
    """A table of per-class accuracy, worst class marked; with many classes, the 10 worst and
    the 10 best."""
    items = list(metrics["per_class"].items())
    per_class = {c: a for c, a in items if a is not None}
    worst = min(per_class, key=per_class.get) if per_class else None
    title = "accuracy"
    if len(items) > MANY_CLASSES:
        ranked = sorted(per_class.items(), key=lambda t: t[1])
        items = ranked[:10] + [("...", None)] + ranked[-10:]
        title = f"accuracy (the 10 worst and 10 best of {len(metrics['per_class'])} classes)"
    width = max(len(c) for c, _ in items)
    lines = [f"{'class':<{width}}  {title}"]
    for c, acc in items:
        shown = "" if c == "..." else "     n/a" if acc is None else f"{acc:7.2f}%"
        lines.append(f"{c:<{width}}  {shown}{'  <- worst' if c == worst else ''}")
    return "\n".join(lines)


def format_confusion(metrics: dict[str, Any]) -> str:
    """The confusion matrix as text: rows are true classes, columns predictions."""
    if len(metrics["classes"]) > MANY_CLASSES:
        return (f"confusion matrix: {len(metrics['classes'])} classes, too many to print; "
                "see confusion.png in the run folder, or --json")
    names = [c[:5] for c in metrics["classes"]]
    width = max(5, max(len(str(v)) for row in metrics["confusion"] for v in row))
    head = " " * 11 + " ".join(f"{n:>{width}}" for n in names)
    rows = [f"{c[:10]:<10} " + " ".join(f"{v:>{width}}" for v in row)
            for c, row in zip(metrics["classes"], metrics["confusion"], strict=True)]
    return "\n".join(["confusion matrix (rows: true class, columns: predicted)", head, *rows])
