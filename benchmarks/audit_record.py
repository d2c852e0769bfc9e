"""The audit guide's record and pictures, from a finished `cifarlab audit` of CIFAR-10:

    cifarlab audit --data-dir PATH --out AUDIT
    python benchmarks/audit_record.py AUDIT --data-dir PATH

writes benchmarks/audit-cifar10.json (the counts, the data check, the fold models' accuracy,
the time and machine, the strongest findings of each kind) and docs/images/audit-*.png (those
findings as pictures). docs/guide/audit.md's tables come from the JSON (benchmarks/tables.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cifarlab.data import load_data
from cifarlab.inference.findings import summarise

ROOT = Path(__file__).resolve().parents[1]
SHOWN = 12  # findings pictured per kind


def strongest(findings: list[dict], kind: str) -> list[dict]:
    mine = [f for f in findings if f["kind"] == kind]
    return mine[:SHOWN]  # the audit lists each kind strongest first


def picture(data, findings: list[dict], title: str, out: Path) -> None:
    """A row of findings: each image with its label, and its copy or the suggested label."""
    pairs = any("partner" in f for f in findings)
    fig = Figure(figsize=(1.6 * len(findings), 2.6 if pairs else 1.9))
    axes = fig.subplots(2 if pairs else 1, len(findings), squeeze=False)
    fig.suptitle(title, fontsize=11, y=1.1 if pairs else 1.15)
    for col, f in enumerate(findings):
        image = data.split(f["split"])[0][f["index"]].numpy().transpose(1, 2, 0)
        axes[0, col].imshow(image, interpolation="nearest")
        if pairs:
            p = f["partner"]
            axes[1, col].imshow(data.split(p["split"])[0][p["index"]].numpy().transpose(1, 2, 0),
                                interpolation="nearest")
            axes[0, col].set_title(f"{f['split']} {f['index']}\n{f['label']}", fontsize=7)
            axes[1, col].set_title(f"{p['split']} {p['index']}, {f['score']:.3f}", fontsize=7)
        else:
            axes[0, col].set_title(f"{f['split']} {f['index']}\n{f['label']} -> "
                                   f"{f['suggested']}", fontsize=7)
    for ax in np.ravel(axes):
        ax.set_axis_off()
    fig.savefig(out, dpi=110, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("audit", help="the audit's folder")
    p.add_argument("--data-dir", required=True)
    args = p.parse_args()
    record = json.loads((Path(args.audit) / "audit.json").read_text())
    data = load_data(record["dataset"], args.data_dir, download=False, val_size=0)
    kinds = {"label": "likely wrong labels (given -> suggested)",
             "leakage": "test images with a near-copy in the training split",
             "near-duplicate": "near-copies within a split"}
    top = {k: strongest(record["findings"], k) for k in kinds}
    keep = ("dataset", "fold_accuracy", "seconds", "machine", "settings",
            "cifarlab_version")
    compact = {**{k: record[k] for k in keep}, "summary": summarise(record["findings"]),
               "check": record["check"]["lines"],
               "images": {s: v["images"] for s, v in record["data"].items()
                          if isinstance(v, dict) and "images" in v}, "strongest": top}
    (ROOT / "benchmarks" / "audit-cifar10.json").write_text(json.dumps(compact, indent=1) + "\n")
    for kind, title in kinds.items():
        if top[kind]:
            picture(data, top[kind], f"CIFAR-10: the strongest {title}",
                    ROOT / "docs" / "images" / f"audit-{kind}.png")


if __name__ == "__main__":
    main()
