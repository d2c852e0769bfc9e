"""`cifarlab compare RUN RUN...`: finished runs side by side in one self-contained page —
curves overlaid (per epoch and per second), the settings that differ, accuracy with the
differences to the first run, per-class accuracy (and which classes gained and lost most), and
for two runs the change in the confusion matrix. Runs of different datasets or class lists are
refused."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.reporting import plots
from cifarlab.reporting.html import PAGE_STYLE, png_base64
from cifarlab.runs import RunFolder
from cifarlab.runs.claims import check_output

IGNORED = ("run_dir", "report")  # settings that differ between any two runs


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """A finished run folder's settings, metrics, metrics.csv rows and name."""
    folder = RunFolder(path)
    if not RunFolder.holds_run(folder.path):
        raise CifarlabError(f"{folder.path} is not a run folder; compare takes finished runs")
    config = folder.settings().to_dict()
    metrics = folder.metrics()
    if metrics is None:
        raise CifarlabError(f"{folder.path} has not finished (no test result yet); compare "
                            "takes finished runs")
    return {"name": folder.path.name, "path": folder.path, "config": config,
            "metrics": metrics, "rows": folder.rows(),
            "split": metrics.get("evaluated_on", "test")}


def check_comparable(runs: list[dict[str, Any]]) -> None:
    first = runs[0]
    for run in runs[1:]:
        a = first["config"].get("dataset")
        b = run["config"].get("dataset")
        if a != b or first["metrics"].get("classes") != run["metrics"].get("classes"):
            raise CifarlabError(
                f"cannot compare {first['name']} ({a}, {len(first['metrics'].get('classes', []))}"
                f" classes) with {run['name']} ({b}, {len(run['metrics'].get('classes', []))} "
                f"classes): compare runs of one dataset and one class list")
        if run["split"] != first["split"]:
            raise CifarlabError(f"{first['name']} was evaluated on {first['split']} and "
                                f"{run['name']} on {run['split']}: their accuracies differ in kind")


def differing_settings(runs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    keys = dict.fromkeys(k for r in runs for k in r["config"] if k not in IGNORED)
    out = []
    for key in keys:
        values = [r["config"].get(key) for r in runs]
        if any(v != values[0] for v in values):
            out.append((key, values))
    return out


def accuracy_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """Top-1, top-5 and macro-F1 of each run with the difference to the first run, its
    calibration error and training time (older runs' metrics have no F1 or ECE: n/a)."""
    split = runs[0]["split"]
    base = runs[0]["metrics"]
    out = []
    for r in runs:
        m = r["metrics"]
        cells = [r["name"]]
        for k in ("top1", "top5", "macro_f1"):
            value = m.get(f"{split}_{k}")
            ref = base.get(f"{split}_{k}")
            cells += ["n/a" if value is None else f"{value:.2f}%",
                      "" if r is runs[0] or value is None or ref is None else f"{value - ref:+.2f}"]
        ece = m.get(f"{split}_ece")
        cells.append("n/a" if ece is None else f"{ece:.2f}%")
        cells.append(f"{m.get('train_seconds', 0) / 60:.1f} min")
        out.append(cells)
    return out


def class_changes(runs: list[dict[str, Any]], top: int = 5) -> tuple[list, list]:
    """(gained, lost): the classes whose accuracy rose or fell most from the first run to
    the last, as (class, first, last, change)."""
    a = runs[0]["metrics"]["per_class"]
    b = runs[-1]["metrics"]["per_class"]
    changes = [(c, a[c], b[c], b[c] - a[c]) for c in a if a[c] is not None and b.get(c)
               is not None]
    changes.sort(key=lambda t: t[3])
    return changes[::-1][:top], changes[:top]


def f1_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """Each class's F1 in each run (n/a: an older run's metrics, without precision)."""
    classes = runs[0]["metrics"]["classes"]

    def f1(run: dict[str, Any], c: str) -> str:
        value = ((run["metrics"].get("class_scores") or {}).get(c) or {}).get("f1")
        return "n/a" if value is None else f"{value:.2f}%"

    return [[c, *(f1(r, c) for r in runs)] for c in classes]


def draw(runs: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    names = [r["name"] for r in runs]
    figures = {"curves.png": plots.plot_compare_curves([(r["name"], r["rows"]) for r in runs]),
               "per_class.png": plots.plot_compare_per_class(
                   names, [r["metrics"]["per_class"] for r in runs])}
    if len(runs) == 2:
        figures["confusion_change.png"] = plots.plot_confusion_change(
            runs[0]["metrics"]["confusion"], runs[1]["metrics"]["confusion"],
            runs[0]["metrics"]["classes"], names)
    return {name: plots.save_png(fig, folder / name) for name, fig in figures.items()}


TEMPLATE = """{% macro table(head, rows) -%}
<table><tr>{% for h in head %}<th>{{ h }}</th>{% endfor %}</tr>
{%- for row in rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>{%- endmacro %}
{% macro picture(name) %}<img src='data:image/png;base64,{{ pictures[name] }}'
alt='{{ name }}'>{% endmacro -%}
<!DOCTYPE html>
<html lang='en'><head><meta charset='utf-8'><title>cifarlab compare: {{ names|join(", ") }}
</title>
<style>{{ style }}</style></head><body>
<h1>cifarlab compare</h1>
<p>{{ names|length }} runs of {{ dataset }}; differences are to the first run, {{ names[0] }}.
Accuracy: {{ split }}. Page written {{ written }}.</p>
<h2>Accuracy</h2>
{{ table(["run", "top-1", "change", "top-5", "change", "macro-F1", "change", "ECE",
          "training time"], accuracy) }}
<h2>Settings that differ</h2>
{% if settings %}{{ table(["setting"] + names, settings) }}
{% else %}<p>None: the runs share every setting.</p>{% endif %}
<h2>Curves</h2>
{{ picture("curves.png") }}
<h2>Per class</h2>
<div class='cols'>{% for title, rows in changes %}<div><h3>{{ title }}</h3>
{{ table(["class", names[0], names[-1], "change"], rows) }}</div>{% endfor %}</div>
{{ picture("per_class.png") }}
<h3>F1 per class</h3>
{{ table(["class"] + names, f1) }}
{% if "confusion_change.png" in pictures %}<h2>Change in the confusion matrix</h2>
{{ picture("confusion_change.png") }}{% endif %}
<h2>Runs</h2>
<table class='kv'>{% for name, path in paths %}<tr><th>{{ name }}</th><td>{{ path }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def render(runs: list[dict[str, Any]], pictures: dict[str, Path]) -> str:
    """The page (jinja2, every value escaped)."""
    names = [r["name"] for r in runs]
    gained, lost = class_changes(runs)

    def changes(items: list) -> list[list[str]]:
        return [[c, f"{x:.2f}%", f"{y:.2f}%", f"{d:+.2f}"] for c, x, y, d in items]

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        names=names, style=PAGE_STYLE, dataset=str(runs[0]["config"].get("dataset")),
        split="test" if runs[0]["split"] == "test" else "validation (no test set)",
        written=f"{datetime.now():%Y-%m-%d %H:%M}", accuracy=accuracy_rows(runs),
        settings=[[k, *map(json.dumps, v)] for k, v in differing_settings(runs)],
        changes=[("Gained most", changes(gained)), ("Lost most", changes(lost))],
        f1=f1_rows(runs), paths=[(r["name"], str(r["path"])) for r in runs],
        pictures={name: png_base64(path) for name, path in pictures.items()})


def compare_runs(run_dirs: list[str | os.PathLike], out: str | os.PathLike = "compare.html",
                 pictures: str | os.PathLike | None = None) -> Path:
    """Write the comparison page of `run_dirs` (two or more finished runs) to `out`; the
    pictures are inside the page, and also kept as PNG files in `pictures` if given."""
    if len(run_dirs) < 2:
        raise CifarlabError("compare needs two or more run folders")
    runs = [load_run(p) for p in run_dirs]
    check_comparable(runs)
    out = Path(out)
    check_output(out)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(pictures) if pictures else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        page = render(runs, draw(runs, folder))
    publish_text(out, page)
    return out
