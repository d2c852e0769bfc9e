"""Per-class scores, calibration and the confusion matrix as text: what `cifarlab train` and
`cifarlab evaluate` print, and the one choice of which classes a table or picture shows."""

from __future__ import annotations

from typing import Any

from cifarlab.metrics import TEMPERATURE_FROM

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
    """A table of per-class accuracy (recall), precision, F1 and the number of images, worst
    class marked (see `shown_classes`); macro-F1 below. Older runs without precision: accuracy
    only."""
    items, worst, title = shown_classes(metrics["per_class"])
    if len(items) < len(metrics["per_class"]):
        items = items[:10] + [("...", None)] + items[10:]
    scores = metrics.get("class_scores") or {}
    width = max(len(c) for c, _ in items)
    extra = f"  {'precision':>9}  {'F1':>9}  images" if scores else ""
    lines = [f"{'class':<{width}}  {title}{extra}"]
    for c, acc in items:
        shown = "" if c == "..." else "     n/a" if acc is None else f"{acc:7.2f}%"
        if scores and c in scores:
            s = scores[c]
            shown += "".join("        n/a" if s[k] is None else f"  {s[k]:8.2f}%"
                             for k in ("precision", "f1")) + f"  {s['support']:6d}"
        lines.append(f"{c:<{width}}  {shown}{'  <- worst' if c == worst else ''}")
    macro = figure(metrics, "macro_f1")
    if macro is not None:
        lines.append(f"macro-F1 {macro:.2f}% (the mean of the classes' F1)")
    return "\n".join(lines)


def format_calibration(metrics: dict[str, Any]) -> str:
    """One line: expected calibration error, negative log-likelihood and Brier score ("" for
    an older run's metrics, which have none)."""
    ece, nll, brier = (figure(metrics, k) for k in ("ece", "nll", "brier"))
    if ece is None:
        return ""
    line = (f"calibration: ECE {ece:.2f}% ({len(metrics['reliability'])} bins), NLL {nll:.4f}, "
            f"Brier {brier:.4f}")
    c = metrics.get("calibration")
    if not c:  # an older run's, or evaluate's
        return line
    if c["temperature"] is None:
        return line + " (no temperature: train with --val-size N to fit one)"
    b = c["before"]
    return (line + f" with temperature {c['temperature']:.3f} ({TEMPERATURE_FROM[c['from']]}); "
            f"without: ECE {b['ece']:.2f}%, NLL {b['nll']:.4f}, Brier {b['brier']:.4f}")


def figure(metrics: dict[str, Any], key: str) -> Any:
    """`key` of `evaluate`'s metrics, or of metrics.json's (named by split: test_ece)."""
    return metrics.get(key, metrics.get(f"{metrics.get('evaluated_on')}_{key}"))


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
