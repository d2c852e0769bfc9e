"""The benchmarks page's tables of calibration and of the bundled models (rendered by tables.py):
the presets' temperatures and their checks (benchmarks/preset-temperatures.json, from
benchmarks/preset_temperatures.py) and the trained models that come with cifarlab
(benchmarks/bundled-models.json, from benchmarks/bundle_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _figures(before: dict, after: dict, key: str, unit: str = "") -> str:
    digits = 2 if unit else 4
    return f"{before[key]:.{digits}f}{unit} → {after[key]:.{digits}f}{unit}"


def temperatures_table(name: str) -> str:
    """Each development run's fitted temperature and each check, then the presets' means."""
    r = json.loads((HERE / name).read_text())
    lines = ["| preset | run | seed | temperature | test top-1 | test ECE | test NLL | "
             "test Brier | machine |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| --- |"]
    for row in r["runs"]:
        what = (f"fitted on {row['val_images']:,} validation images" if row["kind"] == "fit"
                else "check: no validation split, the preset's temperature")
        b, a = row["before"], row["after"]
        lines.append(f"| `{row['preset']}` | {what} | {row['seed']} | {row['temperature']:.4f} "
                     f"| {row['test_top1']:.2f}% | {_figures(b, a, 'ece', '%')} | "
                     f"{_figures(b, a, 'nll')} | {_figures(b, a, 'brier')} | {row['machine']}, "
                     f"{row['precision']} |")
    means = [f"`{p}` {s['temperature']} "
             + (f"(mean of {s['runs']} runs, std {s['std']:.4f})" if s["runs"] > 1 else
                "(one run)") for p, s in r["presets"].items()]
    return "\n".join([*lines, "", "The presets' temperatures (runs/presets.py): "
                      + "; ".join(means) + f". Machine: {r['machine']}."])


def bundled_table(name: str) -> str:
    """Each bundled model: its run, accuracy with float32 and bf16 weights, size."""
    models = json.loads((HERE / name).read_text())["models"]
    lines = ["| name | made by | test top-1 (float32 weights → bf16 weights) | test ECE "
             "(without temperature) | temperature | package size | machine |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for m in models:
        lines.append(f"| `{m['name']}` | `cifarlab train --preset {m['preset']} --seed "
                     f"{m['seed']}` | {m['top1_float32_weights']:.2f}% → "
                     f"{m['top1_bf16_weights']:.2f}% | {m['ece']:.2f}% ({m['ece_without']:.2f}%) "
                     f"| {m['temperature']:.4f} | {m['package_bytes'] / 1e6:.2f} MB | "
                     f"{m['machine']}, {m['precision']} |")
    total = sum(m["package_bytes"] for m in models) / 1e6
    return "\n".join([*lines, "", f"Together {total:.1f} MB: what they add to the wheel. "
                      f"Machine: {json.loads((HERE / name).read_text())['machine']}."])
