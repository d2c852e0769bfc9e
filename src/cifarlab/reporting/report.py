"""The run report: pictures (curves, confusion, per-class, calibration, predictions,
mistakes) and one self-contained report.html, written into the run folder at the end of
training or on demand with `cifarlab report RUN_DIR`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import numpy as np
import torch

from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.inference import predict_split
from cifarlab.inference.bundled import bundled_name
from cifarlab.inference.hub import resolve_source
from cifarlab.metrics import compute_metrics
from cifarlab.models import Classifier
from cifarlab.reporting import plots
from cifarlab.reporting.html import PAGE_STYLE, png_base64
from cifarlab.reporting.tables import format_calibration, shown_classes
from cifarlab.runs import Config, RunFolder
from cifarlab.runs.logs import format_duration
from cifarlab.runs.package import is_package, package_metrics, package_settings

PICTURES = {
    "curves.png": "Training curves",
    "confusion.png": "Confusion matrix",
    "per_class.png": "Accuracy per class",
    "reliability.png": "Calibration: confidence against accuracy",
    "predictions.png": "Predictions on the first 64 test images",
    "mistakes.png": "Most confidently wrong",
}


def split_label(metrics: dict[str, Any]) -> str:
    """What the evaluated split is called on the page: test, or validation (an image folder
    without test/)."""
    return "test" if metrics.get("split", "test") == "test" else "validation"


def confused_pairs(confusion: list[list[int]], classes: list[str], top: int = 10) -> list[dict]:
    """The largest off-diagonal cells: which true class is most often taken for which."""
    counts = np.asarray(confusion)
    support = counts.sum(1)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), len(classes))
        if off[i, j] == 0:
            break
        pairs.append({"true": classes[i], "predicted": classes[j], "count": int(off[i, j]),
                      "share": 100.0 * off[i, j] / max(support[i], 1)})
    return pairs


def report_folder(run_dir: str | os.PathLike) -> Path:
    """Where a report goes: into a run's folder; beside a model package, in NAME-report/ (a
    package holds what it shares and nothing else); for a bundled model, NAME-report/ here."""
    if bundled_name(run_dir):
        return Path(f"{os.fspath(run_dir)}-report")
    path = Path(run_dir)
    return path.parent / f"{path.name}-report" if is_package(path) else path


@dataclass(frozen=True)
class RunResults:
    """What a report says beside the evaluation it draws: the run's name and settings, its
    metrics.json content ({} for none), its metrics.csv rows, and the classifier that made the
    logits (for the mistakes' heatmaps; None: a plain grid). A finishing run hands over what
    it holds; `cifarlab report` reads them from the run folder (`results_of`)."""

    name: str
    config: Config
    saved: dict[str, Any]
    rows: list[dict[str, Any]]
    model: Classifier | None = None


def results_of(run_dir: str | os.PathLike, model: Classifier | None = None) -> RunResults:
    """A run folder's or model package's results, read back from its files."""
    folder = RunFolder(resolve_source(run_dir))
    if is_package(folder.path):
        config = package_settings(folder.path)
        saved = package_metrics(folder.path) or {}
    else:
        config = folder.settings()
        saved = folder.metrics() or {}
    return RunResults(folder.path.name, config, saved, folder.rows(), model)


def write_report(results: RunResults, out: Path, images: torch.Tensor, labels: torch.Tensor,
                 logits: torch.Tensor, classes: list[str], split: str = "test") -> Path:
    """Draw the pictures from test-set logits (`split="val"`: an image folder without a test
    set) and write report.html into folder `out`; returns its path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CifarlabError(f"cannot create report folder {out}: {e.strerror}") from None
    images_np = images.cpu().numpy()
    labels_np = labels.cpu().numpy()
    probs = torch.softmax(logits.float().cpu(), 1).numpy()
    metrics = compute_metrics(logits.float().cpu(), labels.cpu(), classes)
    metrics["split"] = split
    overlays = mistake_heatmaps(results.model, images, labels_np, probs)
    with matplotlib.rc_context({"font.size": 11}):
        written = _draw(out, results.rows, metrics, images_np, labels_np, probs, classes,
                        overlays)
    page = RunFolder(out).report_page
    publish_text(page, render_html(results, metrics, written))
    return page


def mistake_heatmaps(model: Classifier | None, images: torch.Tensor, labels: np.ndarray,
                     probs: np.ndarray) -> dict[int, np.ndarray] | None:
    """The most confident mistakes with the Grad-CAM heatmap of their predicted class over
    them; None (a plain grid) without a model or captum, or when the model gives none."""
    from cifarlab.inference.heatmaps import grad_cam, overlay

    wrong = plots.most_confident_mistakes(labels, probs)
    if model is None or not len(wrong):
        return None
    try:
        maps, _ = grad_cam(model, images[wrong].cpu(), torch.from_numpy(probs[wrong].argmax(1)))
    except (CifarlabError, RuntimeError):  # no captum, a model without a feature map
        return None
    pictures = images[wrong].cpu().numpy().transpose(0, 2, 3, 1)
    return {int(i): overlay(p, m.numpy(), size=64) for i, p, m in zip(wrong, pictures, maps,
                                                                      strict=True)}


def _draw(run_dir: Path, rows: list[dict], metrics: dict[str, Any], images: np.ndarray,
          labels: np.ndarray, probs: np.ndarray, classes: list[str],
          overlays: dict[int, np.ndarray] | None = None) -> dict[str, Path]:
    split = split_label(metrics)
    figures = {
        "curves.png": plots.plot_curves(rows) if rows else None,
        "confusion.png": plots.plot_confusion(metrics["confusion"], classes, split),
        "per_class.png": plots.plot_per_class(metrics["per_class"], split),
        "reliability.png": plots.plot_reliability(metrics["reliability"], metrics["ece"], split),
        "predictions.png": plots.plot_predictions(images[:64], labels[:64],
                                                  probs[:64].argmax(1), classes, split=split),
        "mistakes.png": plots.plot_mistakes(images, labels, probs, classes, split=split,
                                            overlays=overlays),
    }
    return {name: plots.save_png(fig, run_dir / name)
            for name, fig in figures.items() if fig is not None}


def report_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
               device: str = "auto", other_data: bool = False) -> Path:
    """Re-evaluate a run's (or package's) chosen weights on the test set; write its report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CifarlabError(f"{run_dir} is not a folder; give a run folder made by cifarlab train"
                            " or a model package")
    p = predict_split(run_dir, data_dir=data_dir, split="test", device=device,
                      other_data=other_data)
    return write_report(results_of(run_dir, p["model"]), report_folder(run_dir), p["images"],
                        p["labels"], p["logits"], p["classes"], p["split"])


def saved_calibration(saved: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's calibration (its temperature and the figures without it), if any."""
    return {"calibration": saved["calibration"]} if saved.get("calibration") else {}


def _summary(metrics: dict[str, Any], saved: dict[str, Any]) -> list[tuple[str, Any]]:
    best_val = saved.get("best_val_acc")
    chosen = (f"epoch {saved['best_epoch']} (validation {best_val:.2f}%)" if best_val is not None
              else f"epoch {saved['best_epoch']} (last; no validation split)"
              if "best_epoch" in saved else "unknown")
    name = split_label(metrics)
    rows = [(f"{name} top-1", f"{metrics['top1']:.2f}%"),
            (f"{name} top-5", f"{metrics['top5']:.2f}%"),
            (f"{name} macro-F1", f"{metrics['macro_f1']:.2f}%"),
            (f"{name} calibration", format_calibration({**metrics, **saved_calibration(saved)}
                                                       ).removeprefix("calibration: ")),
            (f"{name} images", metrics["count"]),
            ("weights tested", chosen)]
    if "epochs" in saved:
        rows += [("epochs run", saved["epochs"]),
                 ("training time", format_duration(saved["train_seconds"])),
                 ("device", f"{saved.get('device', '?')} ({saved.get('device_name', '?')})"),
                 ("torch / cifarlab", f"{saved.get('torch_version')} / "
                                      f"{saved.get('cifarlab_version')}")]
    return rows


def per_class_rows(metrics: dict[str, Any]) -> tuple[str, str | None, list[list[Any]]]:
    """(title, worst class, rows of class, recall, precision, F1, images): worst first; with
    many classes the 10 worst and the 10 best (see `shown_classes`)."""
    items, worst, title = shown_classes(metrics["per_class"])
    scores = metrics["class_scores"]
    cell = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    rows = [[c, cell(a), cell(scores[c]["precision"]), cell(scores[c]["f1"]),
             scores[c]["support"]]
            for c, a in sorted(items, key=lambda t: (t[1] is None, t[1] or 0.0))]
    return title, worst, rows


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ style }}</style></head><body>
<h1>{{ title }}</h1>
<p>{{ cfg.dataset }}, model {{ cfg.model }}, preset {{ cfg.preset }}, seed {{ cfg.seed }}.
{{ honesty }}
Report written {{ written }}.</p>
<table class="kv">{% for name, value in summary %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<div class="cols">
<div><h2>Per class (worst first)</h2>
<table><tr><th>class</th><th>{{ per_class_title }} (recall)</th><th>precision</th><th>F1</th>
<th>images</th></tr>{% for row in per_class %}
<tr{% if row[0] == worst %} class=worst{% endif %}>{% for v in row %}<td>{{ v }}</td>
{%- endfor %}</tr>{% endfor %}</table></div>
<div><h2>Most confused pairs</h2>
<table><tr><th>true</th><th>predicted as</th><th>images</th><th>share of the true class</th></tr>
{%- for p in pairs %}
<tr><td>{{ p.true }}</td><td>{{ p.predicted }}</td><td>{{ p.count }}</td>
<td>{{ "%.1f" % p.share }}%</td></tr>{% endfor %}</table></div>
</div>
<h2>Pictures</h2>
{% for caption, data in pictures %}<figure><figcaption>{{ caption }}</figcaption>
<img src='data:image/png;base64,{{ data }}' alt='{{ caption }}'></figure>
{% endfor %}
<h2>Configuration</h2>
<table class="kv">{% for name, value in config %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
</body></html>
"""


def render_html(results: RunResults, metrics: dict[str, Any], pictures: dict[str, Path]) -> str:
    """The page (jinja2, every value escaped)."""
    cfg = results.config
    split = split_label(metrics)
    honesty = ("Test accuracy is measured once, on weights chosen without the test set." if
               split == "test" else "No test set: these are validation figures, and the same "
               "validation split chose the weights, so they are optimistic.")
    title, worst, per_class = per_class_rows(metrics)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        title=f"cifarlab report: {results.name}", style=PAGE_STYLE, cfg=cfg, honesty=honesty,
        written=f"{datetime.now():%Y-%m-%d %H:%M}",
        summary=_summary(metrics, results.saved) + [("test-time augmentation", cfg.tta)],
        per_class_title=title, worst=worst, per_class=per_class,
        pairs=confused_pairs(metrics["confusion"], metrics["classes"]),
        pictures=[(PICTURES[name].replace("test", split), png_base64(path))
                  for name, path in pictures.items()],
        config=[(k, json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
                for k, v in cfg.to_dict().items()])
