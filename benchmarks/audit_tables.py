"""The audit guide's tables (rendered by tables.py): what `cifarlab audit` found in CIFAR-10
(benchmarks/audit-cifar10.json, from benchmarks/audit_record.py) and how much of a planted set
of problems it finds (benchmarks/audit-planted.json, from benchmarks/audit_planted.py)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"label": "likely wrong labels", "leakage": "copies of a training image (leakage)",
         "near-duplicate": "near-copies within the split", "duplicate": "identical copies",
         "constant": "near-constant images"}


def audit_table(name: str) -> str:
    """Findings per kind and split, with the share of the split, then how the audit ran."""
    r = json.loads((HERE / name).read_text())
    splits = [s for s, n in r["images"].items() if n]
    lines = ["| finding | " + " | ".join(f"{s} ({r['images'][s]:,} images)" for s in splits)
             + " |", "| --- |" + " ---: |" * len(splits)]
    for kind, title in KINDS.items():
        per = r["summary"].get(kind, {})
        cells = [f"{per[s]:,} ({100 * per[s] / r['images'][s]:.2f}%)" if s in per else "0"
                 for s in splits]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    s = r["settings"]
    accuracy = ", ".join(f"{a:.2f}%" for a in r["fold_accuracy"])
    return "\n".join([*lines, "", f"{s['folds']} folds of `{s['preset']}` (seed {s['seed']}): "
                      f"held-out accuracy {accuracy}; the whole audit took "
                      f"{r['seconds'] / 60:.1f} minutes on {r['machine']} (cifarlab "
                      f"{r['cifarlab_version']}).", "", "```bash",
                      "cifarlab audit --data-dir PATH --out AUDIT",
                      "python benchmarks/audit_record.py AUDIT --data-dir PATH", "```"])


def planted_table(name: str) -> str:
    """Each planted run: the audit's recall and precision on what was planted."""
    runs = json.loads((HERE / name).read_text())["runs"]
    lines = ["| folds | held-out accuracy | wrong labels planted | found (recall) | flagged "
             "| precision | precision of the top-ranked | copies planted | found (recall) | "
             "shifted / rescaled / JPEG / recoloured | machine |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in runs:
        acc = sum(r["fold_accuracy"]) / len(r["fold_accuracy"])
        by = " / ".join(f"{100 * v:.0f}%" for v in r["leakage_recall_by_alteration"].values())
        lines.append(
            f"| {r['folds']} | {acc:.2f}% | {100 * r['flip_share']:.0f}% | "
            f"{100 * r['label_recall']:.1f}% | {r['label_flagged']:,} | "
            f"{100 * r['label_precision']:.1f}% | {100 * r['label_precision_top']:.1f}% | "
            f"{r['copies']} | {100 * r['leakage_recall']:.1f}% | {by} | {r['machine']} |")
    return "\n".join([*lines, "", "The audit's time is in the table above (these runs shared "
                      "the machine with other work).", "", "```bash",
                      "python benchmarks/audit_planted.py --data-dir PATH --folds 3", "```"])
