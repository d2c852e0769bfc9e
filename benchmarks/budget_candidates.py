"""Development runs for `cifarlab train --time`: each candidate (a speed preset's network and
recipe at some number of epochs) trained on 45,000 images and judged on the 5,000-image
validation split, never the test set, with one view (the last epoch's row) and with the
preset's test-time views (`cifarlab evaluate RUN --split val`). The accuracy-against-compute
table that `runs/budget.py` chooses from is their mean over seeds.

    python benchmarks/budget_candidates.py --data-dir PATH --seeds 0 1

Each run is `cifarlab train --preset P --epochs E --val-size 5000 --seed S --no-report`; its
figures are merged into --out as it ends (a run already there is skipped), with the machine,
the precision and the commit it ran at.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cifarlab import evaluate
from cifarlab.jobs.bench import machine
from cifarlab.runs import RunFolder

# (preset, epochs): each speed network around the length its preset trains, shorter and longer.
GRID = [("fast", e) for e in (1, 2, 3, 4, 6, 8, 10)] + [("90", e) for e in (3, 5, 7, 8)] + [
    ("94", e) for e in (3, 5)]


def run_one(preset: str, epochs: int, seed: int, data_dir: str, root: Path) -> dict:
    run = root / f"{preset}-{epochs}-seed{seed}"
    subprocess.run([sys.executable, "-m", "cifarlab", "train", "--preset", preset, "--epochs",
                    str(epochs), "--val-size", "5000", "--seed", str(seed), "--no-report",
                    "--quiet", "--data-dir", data_dir, "--run-dir", str(run)], check=True)
    folder = RunFolder(run)
    metrics, rows = folder.metrics() or {}, folder.rows()
    views = evaluate(run, data_dir, split="val")
    return {"preset": preset, "epochs": epochs, "seed": seed,
            "low_res_epochs": folder.settings().low_res_epochs,
            "val_top1_one_view": rows[-1]["val_acc"], "val_top1": views["top1"],
            "train_seconds": metrics["train_seconds"], "precision": metrics["precision"],
            "device_name": metrics["device_name"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", metavar="PRESET:EPOCHS",
                        help="run these candidates of the grid only (e.g. 94:5)")
    parser.add_argument("--out", default="benchmarks/budget-candidates.json")
    args = parser.parse_args()
    out = Path(args.out)
    result = (json.loads(out.read_text()) if out.is_file()
              else {"about": __doc__.split("\n\n")[0], "runs": []})
    grid = [(p, e) for p, e in GRID if not args.only or f"{p}:{e}" in args.only]
    root = Path(tempfile.mkdtemp(prefix="cifarlab-budget-"))
    for seed in args.seeds:
        for preset, epochs in grid:
            done = {(r["preset"], r["epochs"], r["seed"]) for r in result["runs"]}
            if (preset, epochs, seed) in done:
                continue
            info = machine()
            row = {**run_one(preset, epochs, seed, args.data_dir, root),
                   "commit": info["commit"], "cpu": info["cpu"]}
            print(json.dumps(row), flush=True)
            result["runs"].append(row)
            out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
