"""The presets' temperatures, and the check that they calibrate runs without a validation split:

    cifarlab train --preset P --seed S --val-size 5000 --data-dir PATH --run-dir DEV_S
    cifarlab train --preset P --seed 0 --data-dir PATH --run-dir RUN
    python benchmarks/preset_temperatures.py --fit DEV_0 DEV_1 ... --check RUN --data-dir PATH

--fit: development runs with a validation split; each gets the temperature that minimises the
NLL of its validation logits (never its test set's), and its test figures without and with it.
A preset's temperature (runs/presets.py) is the mean over its development runs; a test checks
that the two agree. --check: runs without a validation split, scored on the test set without
and with the preset's temperature, as such a run now is. Both go to
benchmarks/preset-temperatures.json (a run measured again replaces its row); the tables in
docs/benchmarks.md come from it (benchmarks/tables.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from cifarlab.inference.calibration import fit_temperature
from cifarlab.inference.evaluation import predict_split
from cifarlab.metrics import compute_metrics
from cifarlab.runs import PRESETS, RunFolder
from cifarlab.runtime import cpu_has_native_bf16, device_name

HERE = Path(__file__).resolve().parent
OUT = HERE / "preset-temperatures.json"
FIGURES = ("ece", "nll", "brier")


def scored(run: Path, temperature: float | None, data_dir: str | None) -> dict[str, Any]:
    """The run's test figures without and with `temperature` (None: the one fitted on its
    validation split)."""
    common = dict(data_dir=data_dir, calibrated=False)
    test = predict_split(run, split="test", **common)
    row: dict[str, Any] = {}
    if temperature is None:
        val = predict_split(run, split="val", **common)
        temperature = fit_temperature(val["logits"], val["labels"])
        row["val_images"] = len(val["labels"])
    before = compute_metrics(test["logits"], test["labels"], test["classes"])
    after = compute_metrics(test["logits"] / temperature, test["labels"], test["classes"])
    return {**row, "temperature": round(temperature, 4), "test_top1": round(before["top1"], 2),
            "before": {k: round(before[k], 4) for k in FIGURES},
            "after": {k: round(after[k], 4) for k in FIGURES}}


def measure(run: Path, kind: str, data_dir: str | None) -> dict[str, Any]:
    folder = RunFolder(run)
    cfg, metrics = folder.settings(), folder.metrics() or {}
    preset_t = PRESETS[cfg.preset].temperature
    if kind == "check" and preset_t is None:
        raise SystemExit(f"{run}: preset {cfg.preset} has no temperature to check")
    return {"kind": kind, "preset": cfg.preset, "seed": cfg.seed, "run": run.name,
            "val_size": cfg.val_size or 0,
            **scored(run, preset_t if kind == "check" else None, data_dir),
            "machine": metrics.get("device_name"), "precision": metrics.get("precision"),
            "torch_version": metrics.get("torch_version")}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per preset: the mean and spread of its development runs' temperatures."""
    out = {}
    for preset in dict.fromkeys(r["preset"] for r in rows if r["kind"] == "fit"):  # in order
        ts = [r["temperature"] for r in rows if r["kind"] == "fit" and r["preset"] == preset]
        out[preset] = {"temperature": round(statistics.fmean(ts), 3), "runs": len(ts),
                       "std": round(statistics.stdev(ts), 4) if len(ts) > 1 else None}
    return out


def machine() -> str:
    """This CPU as the tables name it: its model, whether it computes bf16 natively, torch."""
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16, so float32"
    return f"{device_name(torch.device('cpu'))}: {bf16}; torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fit", nargs="*", default=[], metavar="RUN")
    p.add_argument("--check", nargs="*", default=[], metavar="RUN")
    p.add_argument("--data-dir")
    args = p.parse_args()
    record = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    record.setdefault("machine", machine())
    for kind, runs in (("fit", args.fit), ("check", args.check)):
        for run in map(Path, runs):
            row = measure(run, kind, args.data_dir)
            print(json.dumps(row))
            key = (row["kind"], row["preset"], row["seed"], row["machine"])
            record["runs"] = [r for r in record["runs"]
                              if (r["kind"], r["preset"], r["seed"], r["machine"]) != key]
            record["runs"].append(row)
    record["runs"].sort(key=lambda r: (list(PRESETS).index(r["preset"]), r["kind"] != "fit",
                                       r["seed"]))
    record["presets"] = summary(record["runs"])
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["presets"]))


if __name__ == "__main__":
    main()
