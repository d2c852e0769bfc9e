"""The run report: pictures (curves, confusion, per-class, calibration, predictions,
mistakes) and one self-contained report.html, written into the run folder at the end of
training or on demand with `cifarlab report RUN_DIR`."""

from __future__ import annotations

import html
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.inference import predict_split
from cifarlab.inference.bundled import bundled_name
from cifarlab.inference.hub import resolve_source
from cifarlab.metrics import compute_metrics
from cifarlab.reporting import plots
from cifarlab.reporting.html import PAGE_STYLE, embed_png, html_table
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


def write_report(run_dir: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor,
                 logits: torch.Tensor, classes: list[str], split: str = "test",
                 out_dir: str | os.PathLike | None = None) -> Path:
    """Draw the pictures from test-set logits (`split="val"`: an image folder without a test
    set) of a run folder or model package, and write report.html, into `out_dir` (default:
    `report_folder(run_dir)`); returns its path."""
    folder = RunFolder(resolve_source(run_dir))
    if is_package(folder.path):
        config, saved = package_settings(folder.path), package_metrics(folder.path) or {}
    else:
        config, saved = folder.settings(), folder.metrics() or {}
    out = Path(out_dir) if out_dir is not None else report_folder(run_dir)
    if out != folder.path:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CifarlabError(f"cannot create report folder {out}: {e.strerror}") from None
    images_np = images.cpu().numpy()
    labels_np = labels.cpu().numpy()
    probs = torch.softmax(logits.float().cpu(), 1).numpy()
    metrics = compute_metrics(logits.float().cpu(), labels.cpu(), classes)
    metrics["split"] = split
    rows = folder.rows()
    overlays = mistake_heatmaps(folder.path, images, labels_np, probs)
    with matplotlib.rc_context({"font.size": 11}):
        written = _draw(out, rows, metrics, images_np, labels_np, probs, classes, overlays)
    page = RunFolder(out).report_page
    publish_text(page, render_html(folder.path.name, config, saved, metrics, rows, written))
    return page


def mistake_heatmaps(run_dir: Path, images: torch.Tensor, labels: np.ndarray,
                     probs: np.ndarray) -> dict[int, np.ndarray] | None:
    """The most confident mistakes with the Grad-CAM heatmap of their predicted class over
    them; None (a plain grid) without captum or when the model gives no heatmap."""
    from cifarlab.inference.heatmaps import grad_cam, overlay
    from cifarlab.inference.loading import load_model

    wrong = plots.most_confident_mistakes(labels, probs)
    if not len(wrong):
        return None
    try:
        model = load_model(run_dir)
        maps, _ = grad_cam(model, images[wrong].cpu(), torch.from_numpy(probs[wrong].argmax(1)))
    except (CifarlabError, RuntimeError):  # no captum, a model without a feature map
        return None
    pictures = images[wrong].cpu().numpy().transpose(0, 2, 3, 1)
    return {int(i): overlay(p, m.numpy(), size=64) for i, p, m in zip(wrong, pictures, maps,
                                                                      strict=True)}


def _draw(run_dir: Path, rows: list[dict], metrics: dict[str, Any], images: np.ndarray,
          labels: np.ndarray, probs: np.ndarray, classes: list[str],
          overlays: dict[int, np.ndarray] | None = None) -> dict[str, Path]:
    split = "test" if metrics.get("split", "test") == "test" else "validation"
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
    return write_report(run_dir, p["images"], p["labels"], p["logits"], p["classes"], p["split"])


def saved_calibration(saved: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's calibration (its temperature and the figures without it), if any."""
    return {"calibration": saved["calibration"]} if saved.get("calibration") else {}


def _summary(metrics: dict[str, Any], saved: dict[str, Any]) -> list[tuple[str, Any]]:
    best_val = saved.get("best_val_acc")
    chosen = (f"epoch {saved['best_epoch']} (validation {best_val:.2f}%)" if best_val is not None
              else f"epoch {saved['best_epoch']} (last; no validation split)"
              if "best_epoch" in saved else "unknown")
    name = "test" if metrics.get("split", "test") == "test" else "validation"
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


def _per_class_table(metrics: dict[str, Any]) -> str:
    """Worst first; with many classes the 10 worst and the 10 best (see `shown_classes`)."""
    items, worst, title = shown_classes(metrics["per_class"])
    scores = metrics["class_scores"]
    cell = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    body = "".join(
        f"<tr{' class=worst' if c == worst else ''}><td>{html.escape(c)}</td><td>{cell(a)}</td>"
        f"<td>{cell(scores[c]['precision'])}</td><td>{cell(scores[c]['f1'])}</td>"
        f"<td>{scores[c]['support']}</td></tr>"
        for c, a in sorted(items, key=lambda t: (t[1] is None, t[1] or 0.0)))
    return (f"<table><tr><th>class</th><th>{html.escape(title)} (recall)</th><th>precision</th>"
            f"<th>F1</th><th>images</th></tr>{body}</table>")


def _pairs_table(metrics: dict[str, Any]) -> str:
    pairs = confused_pairs(metrics["confusion"], metrics["classes"])
    body = "".join(f"<tr><td>{html.escape(p['true'])}</td><td>{html.escape(p['predicted'])}"
                   f"</td><td>{p['count']}</td><td>{p['share']:.1f}%</td></tr>" for p in pairs)
    return ("<table><tr><th>true</th><th>predicted as</th><th>images</th>"
            f"<th>share of the true class</th></tr>{body}</table>")


def render_html(name: str, config: Config, saved: dict[str, Any], metrics: dict[str, Any],
                rows: list[dict], pictures: dict[str, Path]) -> str:
    """The page; `saved` is the training run's own metrics.json, when it finished."""
    title = f"cifarlab report: {name}"
    split = "test" if metrics.get("split", "test") == "test" else "validation"
    captions = {name: PICTURES[name].replace("test", split) for name in pictures}
    figures = "".join(f"<figure><figcaption>{captions[name]}</figcaption>"
                      f"{embed_png(path, captions[name])}</figure>"
                      for name, path in pictures.items())
    honesty = ("Test accuracy is measured once, on weights chosen without the test set." if
               split == "test" else "No test set: these are validation figures, and the same "
               "validation split chose the weights, so they are optimistic.")
    config_rows = [(k, json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
                   for k, v in config.to_dict().items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(config.dataset)}, model {html.escape(config.model)},
preset {html.escape(config.preset)}, seed {config.seed}.
{honesty}
Report written {datetime.now():%Y-%m-%d %H:%M}.</p>
{html_table(_summary(metrics, saved) + [("test-time augmentation", config.tta)])}
<div class="cols">
<div><h2>Per class (worst first)</h2>{_per_class_table(metrics)}</div>
<div><h2>Most confused pairs</h2>{_pairs_table(metrics)}</div>
</div>
<h2>Pictures</h2>
{figures}
<h2>Configuration</h2>
{html_table(config_rows)}
</body></html>
"""
