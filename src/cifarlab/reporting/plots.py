"""The report's pictures, drawn with matplotlib's Agg canvas: no window, no display needed.

Each function returns a Figure; `save_png` writes it. Thumbnails are 32×32 images shown with
nearest-neighbour upscaling (3× or more at the default size) so every pixel stays visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cifarlab.files import publishing
from cifarlab.reporting.tables import MANY_CLASSES, shown_classes

WRONG = "#c62828"
RIGHT = "#1b5e20"
BAR = "#4c78a8"
WORST = "#c62828"


def save_png(fig: Figure, path: Path, dpi: int = 80) -> Path:
    with publishing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _thumb(image: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 -> (H, W, 3) for imshow."""
    return np.ascontiguousarray(image.transpose(1, 2, 0))


def plot_curves(rows: Sequence[dict]) -> Figure:
    """Loss, accuracy and learning rate per epoch, from metrics.csv's rows."""
    def column(name: str) -> np.ndarray:
        return np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows])

    epochs = column("epoch")
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, column("train_loss"), "o-", label="train (as optimised)")
    if not np.isnan(column("val_loss")).all():
        ax_loss.plot(epochs, column("val_loss"), "o-", label="validation")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_acc.plot(epochs, column("train_acc"), "o-", label="train (augmented)")
    if not np.isnan(column("val_acc")).all():
        ax_acc.plot(epochs, column("val_acc"), "o-", label="validation")
    ax_acc.set(title="accuracy (%)", xlabel="epoch")
    ax_lr.plot(epochs, column("lr"), "o-", color="gray")
    ax_lr.set(title="learning rate (end of epoch)", xlabel="epoch")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return fig


def _class_matrix(values: np.ndarray, classes: Sequence[str], cmap: str,
                  limits: tuple[float, float], colour_label: str,
                  cell_text: Callable[[int, int], tuple[str, str] | None]) -> tuple[Figure, Any]:
    """A classes x classes picture (rows: true class, columns: predicted) with a colour bar;
    `cell_text(i, j)` gives each cell's (text, colour), or None, up to MANY_CLASSES classes."""
    n = len(classes)
    size = max(7.0, 0.75 * n) if n <= MANY_CLASSES else 14.0
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1])
    fig.colorbar(im, ax=ax, shrink=0.8, label=colour_label)
    if n <= MANY_CLASSES:
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                if (text := cell_text(i, j)) is not None:
                    ax.text(j, i, text[0], ha="center", va="center", fontsize=10,
                            color=text[1])
    ax.set(xlabel="predicted class", ylabel="true class")
    return fig, ax


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                   split: str = "test") -> Figure:
    """Rows: true class, columns: predicted. Colour is the share of the row, text the count."""
    counts = np.asarray(confusion)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = _class_matrix(share, classes, "Blues", (0, 1), "share of the true class",
                            lambda i, j: (str(counts[i, j]),
                                          "white" if share[i, j] > 0.5 else "black"))
    ax.set(title=f"confusion matrix ({split} set)")
    return fig


def plot_per_class(per_class: dict[str, float | None], split: str = "test") -> Figure:
    """Horizontal bars, worst class in red; with many classes only the 10 worst and 10 best."""
    items, worst_class, title = shown_classes(per_class)
    items = [(c, a) for c, a in items if a is not None]
    title = f"per-class {title} ({split} set)"
    worst = per_class[worst_class]
    names = [c for c, _ in items]
    accs = [a for _, a in items]
    fig = Figure(figsize=(9, 0.45 * len(items) + 1.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(range(len(items)), accs, color=[WORST if a == worst else BAR for a in accs])
    ax.set_yticks(range(len(items)), names)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{a:.1f}%" for a in accs], padding=3, fontsize=10)
    ax.set(xlim=(0, 110), xlabel="accuracy (%)", title=title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_reliability(reliability: Sequence[dict], ece: float, split: str = "test") -> Figure:
    """The reliability diagram: each confidence bin's accuracy (bars) and mean confidence (red
    lines; on the diagonal, bars above them: underconfident, below: overconfident), with the
    share of images per bin."""
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax, hist = fig.subplots(1, 2, width_ratios=(3, 2))
    full = [b for b in reliability if b["count"]]
    width = reliability[0]["upper"] - reliability[0]["lower"] if reliability else 1.0
    ax.bar([b["lower"] for b in full], [b["accuracy"] / 100 for b in full], width=width,
           align="edge", color=BAR, edgecolor="white", label="accuracy")
    ax.hlines([b["confidence"] for b in full], [b["lower"] for b in full],
              [b["upper"] for b in full], color=WORST, lw=2.5, label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top softmax probability)",
           ylabel="accuracy", title=f"reliability ({split} set, ECE {ece:.2f}%)")
    ax.legend(loc="upper left")
    total = max(sum(b["count"] for b in reliability), 1)
    hist.bar([b["lower"] for b in reliability], [b["count"] / total for b in reliability],
             width=width, align="edge", color=BAR, edgecolor="white")
    hist.set(xlim=(0, 1), xlabel="confidence", ylabel="share of images",
             title="images per bin")
    return fig


def plot_predictions(images: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                     classes: Sequence[str], rows: int = 8, cols: int = 8,
                     split: str = "test") -> Figure:
    """A grid of test images titled "true → predicted"; wrong ones red and framed in red."""
    fig, axes = _thumbnail_grid(1.6 * cols, 1.85 * rows, rows, cols, title_lines=1)
    wrong = int((labels[:rows * cols] != preds[:rows * cols]).sum())
    fig.suptitle(f"first {rows * cols} {split} images: true → predicted ({wrong} wrong, in "
                 f"red)", fontsize=14)
    for ax, img, y, p in zip(axes, images, labels, preds, strict=False):
        ok = y == p
        ax.imshow(_thumb(img), interpolation="nearest")
        ax.set_title(f"{classes[y]} → {classes[p]}", fontsize=9.5, color=RIGHT if ok else WRONG)
        _frame(ax, None if ok else WRONG)
    for ax in axes[len(images):]:
        ax.set_axis_off()
    return fig


def most_confident_mistakes(labels: np.ndarray, probs: np.ndarray, count: int = 24
                            ) -> np.ndarray:
    """Indices of the errors with the highest predicted probability, highest first."""
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != labels)
    return wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")][:count]


def plot_mistakes(images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                  classes: Sequence[str], count: int = 24, cols: int = 6,
                  split: str = "test", overlays: dict[int, np.ndarray] | None = None
                  ) -> Figure:
    """The most confidently wrong images: highest predicted probability among the errors;
    `overlays` (uint8 HWC pictures by image index) shown instead, e.g. with heatmaps."""
    preds = probs.argmax(1)
    wrong = most_confident_mistakes(labels, probs, count)
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = _thumbnail_grid(2.1 * cols, 2.5 * rows, rows, cols, title_lines=2)
    seen = ", with what the prediction looked at" if overlays else ""
    fig.suptitle(f"the {len(wrong)} most confidently wrong {split} images{seen}", fontsize=14)
    for ax, i in zip(axes, wrong, strict=False):
        shown = overlays[i] if overlays and i in overlays else _thumb(images[i])
        ax.imshow(shown, interpolation="nearest")
        ax.set_title(f"true: {classes[labels[i]]}\npredicted: {classes[preds[i]]} "
                     f"{100 * probs[i, preds[i]]:.0f}%", fontsize=10, color=WRONG)
        _frame(ax, WRONG)
    for ax in axes[len(wrong):]:
        ax.set_axis_off()
    if len(wrong) == 0:
        axes[0].text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    return fig


def _thumbnail_grid(width: float, height: float, rows: int, cols: int, title_lines: int
                    ) -> tuple[Figure, np.ndarray]:
    """A figure of rows x cols image axes with room for titles of `title_lines` lines, laid
    out once by fixed spacing: matplotlib's constrained layout re-solves a grid of 64 axes
    at every draw, which doubled the report's drawing time (docs/benchmarks.md)."""
    top = 1 - (0.4 + 0.22 * title_lines) / height  # the figure title and a row of titles
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
        left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.1,
        hspace=0.2 + 0.2 * title_lines)).ravel()
    return fig, axes


def _frame(ax, color: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(color is not None)
        if color:
            spine.set_color(color)
            spine.set_linewidth(3)


# --- runs side by side (`cifarlab compare`) ------------------------------------------------

def plot_compare_curves(runs: Sequence[tuple[str, Sequence[dict]]]) -> Figure:
    """Validation accuracy and loss of several runs overlaid, per epoch and per second of
    training (the training set's where a run has no validation split)."""
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for name, rows in runs:
        def column(key: str, rows: Sequence[dict] = rows) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])

        split = "val" if not np.isnan(column("val_acc")).all() else "train"
        label = name if split == "val" else f"{name} (train: no validation split)"
        for row, (key, what) in enumerate((("acc", "accuracy (%)"), ("loss", "loss"))):
            for col, x_key in enumerate(("epoch", "elapsed_seconds")):
                ax = axes[row, col]
                ax.plot(column(x_key), column(f"{split}_{key}"), "o-", label=label)
                ax.set(title=f"validation {what}",
                       xlabel="epoch" if col == 0 else "training time (s)")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    axes[0, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_compare_per_class(names: Sequence[str], per_class: Sequence[dict[str, float | None]]
                           ) -> Figure:
    """Per-class accuracy of each run as grouped horizontal bars (the first 20 classes)."""
    classes = list(per_class[0])[:MANY_CLASSES]
    fig = Figure(figsize=(10, 0.5 * len(classes) * max(1, len(names) / 2) + 1.5),
                 layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(names)
    for k, (name, accs) in enumerate(zip(names, per_class, strict=True)):
        ys = np.arange(len(classes)) + k * height
        ax.barh(ys, [accs.get(c) or 0.0 for c in classes], height, label=name)
    ax.set_yticks(np.arange(len(classes)) + 0.4 - height / 2, classes)
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="accuracy (%)", title="per-class accuracy")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


def plot_confusion_change(before: Sequence[Sequence[int]], after: Sequence[Sequence[int]],
                          classes: Sequence[str], names: Sequence[str]) -> Figure:
    """The second run's confusion matrix minus the first's: on the diagonal, more right
    (green); off it, more of that mistake (red)."""
    change = np.asarray(after) - np.asarray(before)
    signed = np.where(np.eye(len(classes), dtype=bool), change, -change)  # positive = better
    limit = max(1, int(np.abs(change).max()))
    fig, ax = _class_matrix(signed, classes, "RdYlGn", (-limit, limit),
                            "better (green) or worse (red), images",
                            lambda i, j: (f"{change[i, j]:+d}", "black") if change[i, j] else None)
    ax.set(title=f"confusion matrix: {names[1]} minus {names[0]}")
    return fig
