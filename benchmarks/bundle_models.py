"""The trained models that come with cifarlab (src/cifarlab/trained/), made from finished runs:

    cifarlab train --preset fast --seed 0 --data-dir PATH --run-dir FAST
    cifarlab train --preset 94 --seed 0 --data-dir PATH --run-dir R94
    python benchmarks/bundle_models.py cifar10-fast=FAST cifar10-94=R94 --data-dir PATH

Each run is exported as a model package with its conv and linear weights in bfloat16
(`cifarlab export RUN --format package --bf16-weights`), and both the run's float32 weights
and the package's are scored on the test set in float32 (the same computation on every CPU):
the package is kept only if its top-1 is within 0.05 points of the run's. The figures go to
benchmarks/bundled-models.json (the table in docs/benchmarks.md comes from it).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from cifarlab.inference.package import export_package
from cifarlab.metrics import compute_metrics
from cifarlab.runs import RunFolder
from cifarlab.runtime import cpu_has_native_bf16, device_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "bundled-models.json"
TRAINED = ROOT / "src" / "cifarlab" / "trained"
TOLERANCE = 0.05  # points of test top-1 that bf16 storage may cost


def top1_float32(source: Path, data_dir: str) -> float:
    """Test top-1 of the model computed in float32 (not the run's bf16, where it had one)."""
    from cifarlab.inference.loading import load_model
    from cifarlab.models import predict_logits
    from cifarlab.runs.run_data import load_data_for

    model = load_model(source)  # float32, the run's TTA and temperature
    images, labels = load_data_for(model.config, data_dir, download=False).split("test")
    logits = predict_logits(model, images, 500)
    return compute_metrics(logits, labels, model.classes)["top1"]


def bundle(name: str, run: Path, data_dir: str) -> dict[str, Any]:
    out = TRAINED / name
    shutil.rmtree(out, ignore_errors=True)
    export_package(run, out, bf16_weights=True)
    full, stored = top1_float32(run, data_dir), top1_float32(out, data_dir)
    if abs(full - stored) > TOLERANCE:
        shutil.rmtree(out)
        raise SystemExit(f"{name}: bf16 weights score {stored:.2f}%, float32 {full:.2f}%: "
                         f"more than {TOLERANCE} points apart; not bundled")
    metrics = RunFolder(run).metrics() or {}
    cal = metrics.get("calibration") or {}
    return {"name": name, "preset": metrics.get("preset"), "seed": metrics.get("seed"),
            "run_top1": round(metrics["test_top1"], 2), "top1_float32_weights": round(full, 2),
            "top1_bf16_weights": round(stored, 2),
            "ece": round(metrics["test_ece"], 2), "temperature": cal.get("temperature"),
            "ece_without": round(cal["before"]["ece"], 2) if cal else None,
            "weights_bytes": (out / "model.safetensors").stat().st_size,
            "package_bytes": sum(f.stat().st_size for f in out.iterdir()),
            "train_seconds": round(metrics["train_seconds"], 1),
            "machine": metrics.get("device_name"), "precision": metrics.get("precision"),
            "torch_version": metrics.get("torch_version")}


def machine() -> str:
    """This CPU as the tables name it: its model, whether it computes bf16 natively, torch."""
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16, so float32"
    return f"{device_name(torch.device('cpu'))}: {bf16}; torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="NAME=RUN")
    p.add_argument("--data-dir", required=True)
    args = p.parse_args()
    record = json.loads(OUT.read_text()) if OUT.exists() else {"models": []}
    record.setdefault("machine", machine())
    for item in args.models:
        name, _, run = item.partition("=")
        row = bundle(name, Path(run), args.data_dir)
        print(json.dumps(row))
        record["models"] = [m for m in record["models"] if m["name"] != name] + [row]
    OUT.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
