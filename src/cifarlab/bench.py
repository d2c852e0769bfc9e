"""`cifarlab bench`: run presets over several seeds, each as its own `cifarlab train` process, and
record accuracy, wall time and peak memory in a JSON file (the README's results come from it).

`--compare-record` also runs the public speed record's recipe (benchmarks/airbench94_muon.py,
in a source checkout) with the same seeds, as its own process on the same machine, so that the
ratio of wall times is measured side by side. `--seed-list` runs given seeds and merges them
into an existing results file, so that long presets can be measured across sittings.
"""

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

from cifarlab.data import default_data_dir
from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.version import __version__

RECORD = "airbench94_muon"  # the comparator's name in results files
RECORD_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "airbench94_muon.py"


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


def record_script() -> Path:
    if not RECORD_SCRIPT.is_file():
        raise CifarlabError("--compare-record needs a source checkout of cifarlab "
                            "(benchmarks/airbench94_muon.py is not part of the installed "
                            "package): git clone the repository and pip install -e . there")
    return RECORD_SCRIPT


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run a child process: (wall seconds, peak resident memory in MB)."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)  # unlike wait(), gives this child's peak memory
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise CifarlabError(f"the run `{' '.join(cmd)}` failed (exit {code}); its output is "
                            "above")
    return wall, usage.ru_maxrss / 1024


def run_preset(preset: str, seed: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """One `cifarlab train` in a child process: its accuracy, wall time and peak memory."""
    wall, peak = timed([sys.executable, "-m", "cifarlab", "train", "--preset", preset,
                        "--seed", str(seed), "--run-dir", str(run_dir), *extra])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"preset": preset, "seed": seed, "test_top1": metrics["test_top1"],
            "test_top5": metrics["test_top5"], "epochs": metrics["epochs"],
            "wall_seconds": wall, "train_seconds": metrics["train_seconds"],
            "peak_rss_mb": peak, "device": metrics["device"], "run_dir": str(run_dir)}


def run_record(seed: int, run_dir: Path, data_dir: str, compile: bool) -> dict[str, Any]:
    """The record's recipe, one seed, in a child process."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "record.json"
    wall, peak = timed([sys.executable, str(record_script()), "--seed", str(seed),
                        "--data-dir", data_dir, "--out", str(out)]
                       + (["--compile"] if compile else []))
    metrics = json.loads(out.read_text())
    return {"preset": RECORD, "seed": seed, "test_top1": metrics["test_top1"],
            "epochs": metrics["epochs"], "wall_seconds": wall,
            "train_seconds": metrics["train_seconds"], "peak_rss_mb": peak,
            "device": metrics["device"], "precision": metrics["precision"],
            "compile": metrics["compile"], "run_dir": str(run_dir)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {"test_top1": stats([r["test_top1"] for r in runs]),
            "wall_seconds": stats([r["wall_seconds"] for r in runs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "seeds": len(runs)}


def summarize_all(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per preset (and the record), in the order first run; with the record, each preset's
    ratio of mean wall times to it."""
    names = list(dict.fromkeys(r["preset"] for r in runs))
    summary = {n: summarize([r for r in runs if r["preset"] == n]) for n in names}
    if RECORD in summary:
        record_wall = summary[RECORD]["wall_seconds"]["mean"]
        for s in summary.values():
            s["wall_ratio_to_record"] = s["wall_seconds"]["mean"] / record_wall
    return summary


def machine() -> dict[str, Any]:
    return {"commit": git_commit(), "cifarlab_version": __version__,
            "torch_version": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def start_results(out: Path, merge: bool, presets: list[str], extra: list[str],
                  info: dict[str, Any]) -> dict[str, Any]:
    """A new results file, or with `merge` the existing one (same training options only)."""
    if merge and out.is_file():
        result = json.loads(out.read_text())
        if result.get("train_args") != extra:
            raise CifarlabError(f"{out} was measured with training options "
                                f"{result.get('train_args')}, not {extra}: merge only runs of "
                                "the same options, or write to another --out")
        return result
    return {"presets": presets, "train_args": extra, **info, "sittings": [], "runs": [],
            "summary": {}}


def bench(presets: list[str], seeds: list[int], out: Path, runs_root: Path | None,
          extra: list[str], compare_record: bool = False, merge: bool = False
          ) -> dict[str, Any]:
    """Each seed: every preset, then (with `compare_record`) the record's recipe. Results are
    written after every run; with `merge`, runs of the same preset and seed already in `out`
    are replaced and the others kept."""
    if compare_record:
        record_script()  # fail before any run
    runs_root = runs_root or Path(tempfile.mkdtemp(prefix="cifarlab-bench-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data_dir = (extra[extra.index("--data-dir") + 1] if "--data-dir" in extra
                else str(default_data_dir()))
    if "folder" in extra and not (Path(data_dir) / "test").is_dir():  # --dataset folder
        raise CifarlabError(f"bench compares test accuracy, and the image folder {data_dir} "
                            f"has no test/ folder; add PATH/test/CLASS/IMAGE")
    info = machine()  # this sitting's machine and commit, also kept with each of its runs
    result = start_results(out, merge, presets, extra, info)
    result.setdefault("sittings", []).append({"started": stamp, "seeds": seeds,
                                              "presets": presets, **info})
    for seed in seeds:
        for name in presets + ([RECORD] if compare_record else []):
            run_dir = runs_root / f"{stamp}-{name}-seed{seed}"
            run = (run_record(seed, run_dir, data_dir, "--compile" in extra) if name == RECORD
                   else run_preset(name, seed, run_dir, extra))
            run.update(started=stamp, cpu=info["cpu"], commit=info["commit"])
            result["runs"] = [r for r in result["runs"]
                              if (r["preset"], r["seed"]) != (name, seed)] + [run]
            result["runs"].sort(key=lambda r: (r["preset"] == RECORD, r["preset"], r["seed"]))
            result["summary"] = summarize_all(result["runs"])
            publish_text(out, json.dumps(result, indent=2) + "\n")  # keep what is done
    print(markdown_table(result))
    print(f"results written to {out}")
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per preset (and the record)."""
    has_record = RECORD in result["summary"]
    head = ("| preset | test accuracy, mean ± std (per seed) | seeds | wall time per run, "
            "mean (max) |" + (" vs record |" if has_record else "") + " peak memory |")
    lines = [head, "|" + " --- |" * (6 if has_record else 5)]
    for preset, s in result["summary"].items():
        acc = s["test_top1"]
        per_seed = ", ".join(f"{r['test_top1']:.2f}" for r in result["runs"]
                             if r["preset"] == preset)
        ratio = f" {s['wall_ratio_to_record']:.2f}x |" if has_record else ""
        name = f"record ({RECORD}.py)" if preset == RECORD else f"`{preset}`"
        lines.append(f"| {name} | {acc['mean']:.2f}% ± {acc['std']:.2f} ({per_seed}) | "
                     f"{s['seeds']} | {s['wall_seconds']['mean'] / 60:.1f} min "
                     f"({s['wall_seconds']['max'] / 60:.1f}) |{ratio} "
                     f"{s['peak_rss_mb'] / 1024:.2f} GB |")
    cpus = sorted({r.get("cpu", result.get("cpu")) for r in result["runs"]})
    lines.append(f"\nCPU: {', '.join(cpus)}" + ("  (runs from different machines: compare "
                                               "with care)" if len(cpus) > 1 else ""))
    return "\n".join(lines)
