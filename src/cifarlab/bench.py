"""`cifarlab bench`: run presets over several seeds, each as its own `cifarlab train` process, and
record accuracy, wall time and peak memory in a JSON file (the README's results come from it)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.version import __version__


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_one(preset: str, seed: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """One `cifarlab train` in a child process: its wall time and peak resident memory."""
    cmd = [sys.executable, "-m", "cifarlab", "train", "--preset", preset, "--seed", str(seed),
           "--run-dir", str(run_dir), *extra]
    print("$ " + " ".join(cmd[2:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)  # unlike wait(), gives this child's peak memory
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise CifarlabError(f"the run `{' '.join(cmd[2:])}` failed (exit {code}); its output "
                            "is above")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"preset": preset, "seed": seed, "test_top1": metrics["test_top1"],
            "test_top5": metrics["test_top5"], "epochs": metrics["epochs"],
            "wall_seconds": wall, "train_seconds": metrics["train_seconds"],
            "peak_rss_mb": usage.ru_maxrss / 1024, "device": metrics["device"],
            "run_dir": str(run_dir)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {"test_top1": stats([r["test_top1"] for r in runs]),
            "wall_seconds": stats([r["wall_seconds"] for r in runs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "seeds": len(runs)}


def bench(presets: list[str], seeds: int, out: Path, runs_root: Path | None,
          extra: list[str]) -> dict[str, Any]:
    runs_root = runs_root or Path(tempfile.mkdtemp(prefix="cifarlab-bench-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {
        "presets": presets, "seeds": seeds, "train_args": extra, "started": stamp,
        "commit": git_commit(), "cifarlab_version": __version__,
        "torch_version": torch.__version__, "python": platform.python_version(),
        "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "runs": [], "summary": {},
    }
    for preset in presets:
        for seed in range(seeds):
            result["runs"].append(run_one(preset, seed, runs_root / f"{stamp}-{preset}-seed{seed}",
                                          extra))
            result["summary"][preset] = summarize([r for r in result["runs"]
                                                   if r["preset"] == preset])
            publish_text(out, json.dumps(result, indent=2) + "\n")  # keep what is done
    print(markdown_table(result))
    print(f"results written to {out}")
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per preset."""
    lines = ["| preset | test accuracy, mean ± std (per seed) | seeds | wall time per run, "
             "mean (max) | peak memory |", "| --- | --- | --- | --- | --- |"]
    for preset, s in result["summary"].items():
        acc = s["test_top1"]
        per_seed = ", ".join(f"{r['test_top1']:.2f}" for r in result["runs"]
                             if r["preset"] == preset)
        lines.append(f"| `{preset}` | {acc['mean']:.2f}% ± {acc['std']:.2f} ({per_seed}) | "
                     f"{s['seeds']} | {s['wall_seconds']['mean'] / 60:.1f} min "
                     f"({s['wall_seconds']['max'] / 60:.1f}) | "
                     f"{s['peak_rss_mb'] / 1024:.2f} GB |")
    return "\n".join(lines)
