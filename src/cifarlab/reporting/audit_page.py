"""audit.html: an audit's findings as pictures, a self-contained page (jinja2, autoescaped):
a summary, the data check, then per kind the strongest findings (the image, its label, the
suggestion or its copy, the score). Every finding is in audit.json."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import jinja2
import torch
import torch.nn.functional as F

from cifarlab.data import DataSplits
from cifarlab.files import publish_text
from cifarlab.reporting.html import PAGE_STYLE

SHOWN = 60  # findings pictured per kind
THUMB = 96  # pixels

SECTIONS = [
    ("label", "Likely wrong labels", "The given label is probably wrong: a model that never "
     "saw the image says otherwise with confidence. Score: 1 - the probability of the given "
     "label."),
    ("leakage", "Leakage: copies across splits", "An image of a later split (validation or "
     "test) that an earlier one holds too, identically or nearly: part of its score is memory."),
    ("duplicate", "Identical copies within a split", "The same pixels twice."),
    ("near-duplicate", "Near-copies within a split", "The same photo shifted, rescaled, "
     "recoloured, mirrored or recompressed. Score: the pixels' best correlation."),
    ("constant", "Near-constant images", "Almost no variation: blank or failed images."),
]

TEMPLATE = """<!doctype html><html><head><meta charset="utf-8">
<title>cifarlab audit of {{ dataset }}</title>
<style>{{ style }}
.grid { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.card { width: {{ 2 * thumb + 12 }}px; font-size: 0.8rem; }
.card img { width: {{ thumb }}px; height: {{ thumb }}px; image-rendering: pixelated; }
</style></head><body>
<h1>Audit of {{ dataset }}</h1>
<p>{{ how }}</p>
<table class="kv">{% for name, value in summary %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>The data</h2><ul>{% for line in check %}<li>{{ line }}</li>{% endfor %}</ul>
{% for section in sections %}
<h2>{{ section.title }} ({{ section.count }})</h2><p>{{ section.about }}{% if section.count >
section.cards|length %} The {{ section.cards|length }} strongest are shown.{% endif %}</p>
<div class="grid">{% for card in section.cards %}<div class="card">
<img src="data:image/png;base64,{{ card.image }}" alt="{{ card.caption }}">
{% if card.partner %}<img src="data:image/png;base64,{{ card.partner }}" alt="its copy">{% endif %}
<div>{{ card.caption }}</div></div>{% endfor %}</div>
{% endfor %}</body></html>
"""


def png_of(image: torch.Tensor) -> str:
    """A base64 PNG of one uint8 image (3, H, W), enlarged to THUMB pixels."""
    from PIL import Image

    x = F.interpolate(image[None].float(), size=(THUMB, THUMB), mode="nearest")[0]
    buf = io.BytesIO()
    Image.fromarray(x.permute(1, 2, 0).round().to(torch.uint8).numpy()).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def caption(f: dict[str, Any]) -> str:
    where = f.get("file") or f"{f['split']} #{f['index']}"
    if f["kind"] == "label":
        return (f"{where}: labelled {f['label']}, looks like {f['suggested']} "
                f"({100 * f['suggested_probability']:.0f}%); score {f['score']:.2f}")
    if "partner" in f:
        p = f["partner"]
        other = p.get("file") or f"{p['split']} #{p['index']}"
        same = "identical to" if f.get("identical") else f"near ({f['score']:.2f})"
        return f"{where} ({f['label']}) {same} {other} ({p['label']})"
    return f"{where}: score {f['score']:.2f}"


def section(kind: str, title: str, about: str, findings: list[dict[str, Any]],
            data: DataSplits) -> dict[str, Any]:
    mine = [f for f in findings if f["kind"] == kind]
    cards = []
    for f in mine[:SHOWN]:
        partner = f.get("partner")
        cards.append({"image": png_of(data.split(f["split"])[0][f["index"]]),
                      "partner": partner and png_of(data.split(partner["split"])[0][
                          partner["index"]]), "caption": caption(f)})
    return {"title": title, "about": about, "count": len(mine), "cards": cards}


def summary_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    images = {s: v["images"] for s, v in record["data"].items() if isinstance(v, dict)
              and "images" in v and v["images"]}
    rows = [("images", ", ".join(f"{s} {n:,}" for s, n in images.items()))]
    for kind, title, _ in SECTIONS:
        per = record["summary"].get(kind, {})
        rows.append((title, ", ".join(f"{s} {n:,} ({100 * n / images[s]:.2f}%)"
                                      for s, n in per.items()) or "none"))
    rows.append(("held-out accuracy of the fold models",
                 ", ".join(f"{a:.2f}%" for a in record["fold_accuracy"])))
    return rows


def write_audit_page(path: Path, data: DataSplits, record: dict[str, Any]) -> Path:
    s = record["settings"]
    how = (f"{s['folds']} folds of the {s['preset']} recipe (seed {s['seed']}), "
           f"{record['seconds']:.0f} s on {record['machine']}, cifarlab "
           f"{record['cifarlab_version']}.")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(TEMPLATE).render(
        dataset=record["dataset"], style=PAGE_STYLE, thumb=THUMB, how=how,
        summary=summary_rows(record), check=record["check"]["lines"],
        sections=[section(k, t, a, record["findings"], data) for k, t, a in SECTIONS])
    publish_text(path, page)
    return path

