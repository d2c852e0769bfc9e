"""Evaluation: a run's logits on a split, then top-1/top-5, per-class accuracy and confusion,
and the text tables that show them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cifarlab.datasets import load_data
from cifarlab.inference import load_model, predict_logits
from cifarlab.runtime import eval_batch_size, keep_freed_memory, resolve_device


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


def predict_split(checkpoint: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                  split: str = "test", batch_size: int | None = None, device: str = "auto",
                  download: bool = True, tta: str | None = None,
                  tta_share: float | None = None) -> dict[str, Any]:
    """A checkpoint's logits on the test (or validation) images, with the images, labels,
    classes and the split used: an image folder without test/ gives its validation split.
    Test-time augmentation, precision and batch size default to the run's own."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    model = load_model(checkpoint, dev, tta, as_trained=True, tta_share=tta_share)
    cfg = model.config
    data = load_data(cfg["dataset"], data_dir if data_dir is not None else cfg["data_dir"],
                     download, cfg["val_size"], cfg["split_seed"], cfg.get("image_size", 32))
    if split == "test" and not data.has_test:
        split = "val"
    images, labels = {"test": (data.test_images, data.test_labels),
                      "val": (data.val_images, data.val_labels)}[split]
    logits = predict_logits(model, images,
                            batch_size or eval_batch_size(cfg.get("eval_batch_size"), dev))
    return dict(images=images, labels=labels, logits=logits.cpu(), classes=model.classes,
                tta=model.tta, device=str(dev), split=split)


def evaluate(checkpoint: str | os.PathLike, data_dir: str | os.PathLike | None = None,
             split: str = "test", batch_size: int | None = None, device: str = "auto",
             download: bool = True, tta: str | None = None,
             tta_share: float | None = None) -> dict[str, Any]:
    """Evaluate a run folder or checkpoint on the test set (or `split="val"`, as in training).
    Test-time augmentation, precision and batch size default to the run's own settings."""
    p = predict_split(checkpoint, data_dir, split, batch_size, device, download, tta,
                      tta_share)
    metrics = compute_metrics(p["logits"], p["labels"], p["classes"])
    metrics.update(split=p["split"], checkpoint=str(checkpoint), device=p["device"],
                   tta=p["tta"])
    return metrics


MANY_CLASSES = 20  # above this (CIFAR-100), tables and pictures show the extremes


def shown_classes(per_class: dict[str, float | None]
                  ) -> tuple[list[tuple[str, float | None]], str | None, str]:
    """What a table or picture of per-class accuracy shows: (class, accuracy) pairs, the worst
    class, and a title. Up to MANY_CLASSES classes: all, in their order; beyond: the 10 worst
    and the 10 best, worst first."""
    known = {c: a for c, a in per_class.items() if a is not None}
    worst = min(known, key=known.get) if known else None
    if len(per_class) <= MANY_CLASSES:
        return list(per_class.items()), worst, "accuracy"
    ranked = sorted(known.items(), key=lambda t: t[1])
    return (ranked[:10] + ranked[-10:], worst,
            f"accuracy (the 10 worst and 10 best of {len(per_class)} classes)")


def format_per_class(metrics: dict[str, Any]) -> str:
    """A table of per-class accuracy, worst class marked (see `shown_classes`)."""
    items, worst, title = shown_classes(metrics["per_class"])
    if len(items) < len(metrics["per_class"]):
        items = items[:10] + [("...", None)] + items[10:]
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
