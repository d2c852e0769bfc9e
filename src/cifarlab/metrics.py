"""Scores of a classifier's logits against the true labels: top-1 and top-5 accuracy, the loss,
per-class accuracy, precision, recall and F1, the confusion matrix, and calibration (how far
the softmax probabilities can be trusted). Validation, the test, `evaluate` and the report all
score with this one function. Percentages: accuracy, precision, recall, F1, ECE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 (On Calibration of ...)


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor,
                    classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy in percent; `confusion[i][j]` counts images of class i predicted as j."""
    labels = labels.to(logits.device)
    logits = logits.float()
    n = len(classes)
    k = min(5, len(classes))
    pred = logits.argmax(1)
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(1)
    confusion = torch.bincount(labels * n + pred, minlength=n * n).view(n, n).cpu()
    support = confusion.sum(1)
    per_class = {c: (100.0 * confusion[i, i].item() / support[i].item()) if support[i] else None
                 for i, c in enumerate(classes)}
    scores = class_scores(confusion.tolist(), classes)
    known = [s["f1"] for s in scores.values() if s["f1"] is not None]
    return {
        "top1": 100.0 * (pred == labels).float().mean().item(),
        "top5": 100.0 * top5.float().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "count": len(labels),
        "per_class": per_class,
        "class_scores": scores,
        "macro_f1": sum(known) / len(known) if known else None,
        **calibration(logits, labels),
        "confusion": confusion.tolist(),
        "classes": list(classes),
    }


def class_scores(confusion: Sequence[Sequence[int]], classes: Sequence[str]
                 ) -> dict[str, dict[str, float | int | None]]:
    """Per class, in percent: precision (of the images predicted as it, the share that are),
    recall (of its images, the share found: its accuracy) and F1, with its support. A class
    never predicted has precision 0 (as scikit-learn's zero_division=0); one neither present
    nor predicted has None everywhere and is left out of macro-F1."""
    out: dict[str, dict[str, float | int | None]] = {}
    for i, c in enumerate(classes):
        hit = confusion[i][i]
        support = sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        if not support and not predicted:
            out[c] = {"precision": None, "recall": None, "f1": None, "support": 0}
            continue
        p = 100.0 * hit / predicted if predicted else 0.0
        r = 100.0 * hit / support if support else 0.0
        out[c] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                  "support": support}
    return out


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS
                ) -> dict[str, Any]:
    """Expected calibration error (percent; `bins` equal-width bins of the top softmax
    probability, each weighted by its share of the images), negative log-likelihood (natural
    log, per image) and the Brier score (squared distance of the probability vector to the
    one-hot label, summed over classes, per image: 0 best, 2 worst), with each bin's count,
    mean confidence and accuracy for the reliability diagram."""
    if not len(labels):
        return {"ece": None, "nll": None, "brier": None, "reliability": []}
    probs = logits.softmax(1)
    confidence, pred = probs.max(1)
    correct = (pred == labels).float()
    # bin b holds confidences in (b/bins, (b+1)/bins]; the top probability is never 0
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(which, minlength=bins)
    conf_sum = torch.bincount(which, confidence, minlength=bins)
    hit_sum = torch.bincount(which, correct, minlength=bins)
    ece = ((conf_sum - hit_sum).abs().sum() / len(labels)).item()
    onehot = F.one_hot(labels, logits.shape[1]).float()
    reliability = [{"lower": b / bins, "upper": (b + 1) / bins, "count": int(count[b]),
                    "confidence": (conf_sum[b] / count[b]).item() if count[b] else None,
                    "accuracy": (100.0 * hit_sum[b] / count[b]).item() if count[b] else None}
                   for b in range(bins)]
    return {"ece": 100.0 * ece, "nll": F.cross_entropy(logits, labels).item(),
            "brier": ((probs - onehot) ** 2).sum(1).mean().item(), "reliability": reliability}


SCALARS = ("top1", "top5", "loss", "macro_f1", "ece", "nll", "brier")


def split_metrics(m: dict[str, Any], split: str) -> dict[str, Any]:
    """`compute_metrics`' result as metrics.json holds it: the figures named by their split
    (test_top1, val_ece, ...), the tables under their own names."""
    return {**{f"{split}_{k}": m[k] for k in SCALARS}, "evaluated_on": split,
            **{k: m[k] for k in ("per_class", "class_scores", "reliability", "confusion")}}


# where a run's temperature comes from, as a calibration's "from" says it, in words
TEMPERATURE_FROM = {"val": "fitted on the validation split", "preset": "the preset's",
                    "setting": "--temperature", "run": "the run's"}


def calibrated_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str],
                       temperature: float | None, source: str) -> dict[str, Any]:
    """`compute_metrics` of the logits divided by `temperature` (None: as they are), with
    "calibration": the temperature, where it comes from (`source`) and the ECE, NLL and Brier
    of the plain logits (top-1 is the same: dividing keeps every prediction)."""
    m = compute_metrics(logits if temperature is None else logits / temperature, labels,
                        classes)
    before = m if temperature is None else compute_metrics(logits, labels, classes)
    return {**m, "calibration": {"temperature": temperature, "from": source,
                                 "before": {k: before[k] for k in ("ece", "nll", "brier")}}}
