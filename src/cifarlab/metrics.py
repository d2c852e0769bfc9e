"""Scores of a classifier's logits against the true labels: top-1 and top-5 accuracy, the loss,
per-class accuracy and the confusion matrix. Validation, the test, `evaluate` and the report all
score with this one function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


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
