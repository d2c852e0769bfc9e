"""`cifarlab bench`: run presets over several seeds, each as its own `cifarlab train` process, and
record accuracy, wall time and peak memory in a JSON file (the docs' results come from these).

`--compare-record` also runs comparators, other programs' recipes, with the same seeds, each as
its own process on the same machine, so that the ratio of wall times is measured side by side.
The comparators live in a source checkout's benchmarks/ folder, listed in its comparators.json
(`{"NAME": {"script": "FILE.py", ...}}`); a comparator script takes `--seed N --data-dir DIR
--out FILE [--compile]` and writes its result to FILE as JSON with `test_top1`, `epochs`,
`train_seconds`, `device`, `precision` and `compile`. `--seed-list` runs given seeds and merges
them into an existing results file, so that long presets can be measured across sittings.
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

from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.intervals import summary as over_seeds
from cifarlab.jobs.throughput import matmul_rate
from cifarlab.runs import PRESETS, Config, RunFolder, make_config
from cifarlab.runs.logs import format_duration
from cifarlab.runtime import (
    compute_dtype,
    cpu_has_native_bf16,
    cpu_name,
    device_name,
    precision_name,
    resolve_device,
)
from cifarlab.training.flops import training_flops
from cifarlab.version import __version__

COMPARATORS = "comparators.json"


def git_commit() -> str | None:
    """The checkout's commit, with "-dirty" when its working tree has changes (so that a
    result never names a commit whose code did not run)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                             capture_output=True, text=True, cwd=Path(__file__).parent,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def find_comparators(benchmarks: Path, names: list[str]) -> dict[str, Path]:
    """{name: script} of the comparators `names` (all of them when empty), as listed in
    BENCHMARKS/comparators.json."""
    listing = benchmarks / COMPARATORS
    if not listing.is_file():
        raise CifarlabError(f"--compare-record runs the comparators of a source checkout, "
                            f"listed in {listing}, which is not here: run from the root of a "
                            "clone of cifarlab, or pass --benchmarks-dir")
    try:
        known = {name: benchmarks / entry["script"]
                 for name, entry in json.loads(listing.read_text()).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CifarlabError(f"{listing} is not a list of comparators ({e})") from None
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CifarlabError(f"no comparator {', '.join(unknown)} in {listing}; it lists "
                            f"{', '.join(known)}")
    return {n: known[n] for n in (names or known)}


def timed(cmd: list[str]) -> tuple[float, float | None]:
    """Run a child process: (wall seconds, peak resident memory in MB; None where the system
    cannot say)."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = None
    if hasattr(os, "wait4"):  # POSIX: unlike wait(), gives this child's peak memory
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss / 1024
    else:  # Windows: no per-child peak memory
        code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        raise CifarlabError(f"the run `{' '.join(cmd)}` failed (exit {code}); its output is "
                            "above")
    return wall, peak


def budget_entry(budget: str) -> str:
    """The name of a time budget's runs among the presets of a results file."""
    return f"--time {budget}"


def run_preset(name: str, seed: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """One `cifarlab train` in a child process, of a preset or a time budget (`budget_entry`):
    its accuracy, wall time and peak memory (and a budget's plan)."""
    what = name.split() if name.startswith("--time ") else ["--preset", name]
    wall, peak = timed([sys.executable, "-m", "cifarlab", "train", *what,
                        "--seed", str(seed), "--run-dir", str(run_dir), *extra])
    metrics = RunFolder(run_dir).metrics() or {}
    plan = {"plan": metrics["budget"]} if "budget" in metrics else {}
    return {"preset": name, "seed": seed, **plan, "test_top1": metrics["test_top1"],
            "test_top5": metrics["test_top5"], "epochs": metrics["epochs"],
            "wall_seconds": wall, "train_seconds": metrics["train_seconds"],
            "peak_rss_mb": peak, "gpu_peak_memory_mb": metrics.get("gpu_peak_memory_mb"),
            "device": metrics["device"], "device_name": metrics["device_name"],
            "precision": metrics["precision"], "run_dir": str(run_dir)}


def run_flops(run_dir: Path) -> dict[str, float]:
    """The training FLOPs of the run in `run_dir` (its settings, classes and training images),
    forward and backward: {"total": ..., "<size>px": per image}."""
    folder = RunFolder(run_dir)
    metrics = folder.metrics() or {}
    return training_flops(folder.settings(), len(metrics["classes"]), metrics["train_images"])


PEAK_SECONDS = 1.0  # per matrix size: enough repeats for the best of them to be the rate


def measure_peak(device: torch.device, precision: str) -> float:
    """The matrix-product rate of `device` in `precision` (bfloat16, float16, float32)."""
    rate = matmul_rate(device, getattr(torch, precision), seconds=PEAK_SECONDS)
    print(f"{precision} matrix product: {rate / 1e12:.2f} TFLOP/s (best of repeats)", flush=True)
    return rate


def _where(record: dict[str, Any]) -> str:
    """The device a sitting or run computed on: its GPU, else its CPU (older files: the CPU)."""
    return record.get("device_name") or record["cpu"]


def ceilings(result: dict[str, Any]) -> dict[tuple[str, str], float]:
    """{(device, precision): the best matrix-product rate any sitting of the file measured
    there in that precision}: on a shared machine noise only lowers a measured rate. Files of
    before measured bf16 only."""
    best: dict[tuple[str, str], float] = {}
    for sitting in result.get("sittings", []):
        rates = dict(sitting.get("matmul_flop_per_s", {}))
        if sitting.get("bf16_matmul_flop_per_s"):
            rates.setdefault("bfloat16", sitting["bf16_matmul_flop_per_s"])
        for precision, rate in rates.items():
            key = (_where(sitting), precision)
            best[key] = max(rate, best.get(key, 0.0))
    return best


def add_utilisation(result: dict[str, Any]) -> None:
    """For each run with training FLOPs: the achieved rate over its training time, and that
    rate's share of the best matrix-product rate measured on its device in the precision it
    computed in (runs of before: bf16); then the summary."""
    ceiling = ceilings(result)
    for run in result["runs"]:
        key = (_where(run), run.get("precision", "bfloat16")) if "cpu" in run else None
        if "train_flops" in run and key in ceiling:
            run["train_flop_per_s"] = run["train_flops"]["total"] / run["train_seconds"]
            run["utilisation"] = run["train_flop_per_s"] / ceiling[key]
    result["runs"].sort(key=lambda r: (bool(r.get("comparator")), r["preset"], r["seed"]))
    result["summary"] = summarize_all(result["runs"])


def run_comparator(name: str, script: Path, seed: int, run_dir: Path, data_dir: str,
                   compile: bool) -> dict[str, Any]:
    """A comparator's recipe, one seed, in a child process."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / f"{name}.json"
    wall, peak = timed([sys.executable, str(script), "--seed", str(seed), "--data-dir",
                        data_dir, "--out", str(out)] + (["--compile"] if compile else []))
    metrics = json.loads(out.read_text())
    return {"preset": name, "comparator": True, "seed": seed,
            "test_top1": metrics["test_top1"], "epochs": metrics["epochs"],
            "wall_seconds": wall, "train_seconds": metrics["train_seconds"],
            "peak_rss_mb": peak, "gpu_peak_memory_mb": metrics.get("gpu_peak_memory_mb"),
            "device": metrics["device"], "precision": metrics["precision"],
            "compile": metrics["compile"], "run_dir": str(run_dir)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One preset's runs: accuracy and wall time as mean, std, min, max and the 95% Student's t
    interval of the mean; the peak memories; the mean utilisation."""
    gpu = [r["gpu_peak_memory_mb"] for r in runs if r.get("gpu_peak_memory_mb") is not None]
    used = [r["utilisation"] for r in runs if r.get("utilisation") is not None]
    return {"test_top1": over_seeds([r["test_top1"] for r in runs]),
            "wall_seconds": over_seeds([r["wall_seconds"] for r in runs]),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb")),
                               default=None),
            "gpu_peak_memory_mb": max(gpu) if gpu else None,
            "utilisation": statistics.fmean(used) if used else None, "seeds": len(runs)}


def summarize_all(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per preset (and comparator), in the order of first run; with comparators, each one's
    ratio of mean wall times to each comparator (`wall_ratio`)."""
    names = list(dict.fromkeys(r["preset"] for r in runs))
    summary = {n: summarize([r for r in runs if r["preset"] == n]) for n in names}
    comparators = [n for n in names if any(r.get("comparator") for r in runs
                                           if r["preset"] == n)]
    for s in summary.values():
        if comparators:
            s["wall_ratio"] = {c: s["wall_seconds"]["mean"] / summary[c]["wall_seconds"]["mean"]
                               for c in comparators}
    return summary


def machine() -> dict[str, Any]:
    return {"commit": git_commit(), "cifarlab_version": __version__,
            "torch_version": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "native_bf16": cpu_has_native_bf16(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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


def bench(presets: list[str], seeds: list[int], out: Path, *, runs_root: Path | None = None,
          extra: list[str] = (), child: Config | None = None,
          comparators: dict[str, Path] | None = None, merge: bool = False) -> dict[str, Any]:
    """Each seed: every preset, then every comparator, each `cifarlab train` given `extra`
    (whose settings are `child`: its data folder and dataset, and whether it compiles, which
    the comparators are given too). Results are written after every run; with `merge`, runs
    of the same preset and seed already in `out` are replaced and the others kept."""
    comparators = comparators or {}
    extra = list(extra)
    child = child or make_config()
    runs_root = runs_root or Path(tempfile.mkdtemp(prefix="cifarlab-bench-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data_dir = child.data_folder()
    if data_dir is None:
        raise CifarlabError("--dataset folder needs --data-dir PATH (after `--`, or bench's own)")
    if child.dataset == "folder" and not (Path(data_dir) / "test").is_dir():
        raise CifarlabError(f"bench compares test accuracy, and the image folder {data_dir} "
                            f"has no test/ folder; add PATH/test/CLASS/IMAGE")
    info = machine()  # this sitting's machine and commit, also kept with each of its runs
    device = resolve_device("auto")
    result = start_results(out, merge, presets, extra, info)
    sitting = {"started": stamp, "seeds": seeds, "presets": presets,
               "comparators": list(comparators), **info, "device_name": device_name(device),
               "matmul_measured": {}, "matmul_flop_per_s": {}}
    measure_ceiling(sitting, device, precision_name(compute_dtype("auto", device)))
    result.setdefault("sittings", []).append(sitting)
    counted: dict[str, dict[str, float]] = {}  # training FLOPs, counted once per preset
    for seed in seeds:
        for name in presets + list(comparators):
            run_dir = runs_root / f"{stamp}-{name.replace('--time ', 'time-')}-seed{seed}"
            run = (run_comparator(name, comparators[name], seed, run_dir, data_dir,
                                  child.compile) if name in comparators
                   else run_preset(name, seed, run_dir, extra))
            if name not in comparators:
                key = name if name in PRESETS else f"{name} {seed}"  # a budget's plan varies
                run["train_flops"] = counted.setdefault(key, run_flops(run_dir))
                if run["precision"] not in sitting["matmul_measured"]:
                    measure_ceiling(sitting, device, run["precision"])
            run.update(started=stamp, cpu=info["cpu"], commit=info["commit"])
            result["runs"] = [r for r in result["runs"]
                              if (r["preset"], r["seed"]) != (name, seed)] + [run]
            add_utilisation(result)
            publish_text(out, json.dumps(result, indent=2) + "\n")  # keep what is done
    # The rates again after the runs: on a shared machine the best of both is the ceiling.
    for precision in list(sitting["matmul_measured"]):
        measure_ceiling(sitting, device, precision)
    add_utilisation(result)
    publish_text(out, json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"results written to {out}")
    return result


def measure_ceiling(sitting: dict[str, Any], device: torch.device, precision: str) -> None:
    """Measure the matrix-product rate in `precision` once more for this sitting; its ceiling
    there is the best of its measurements."""
    measured = sitting["matmul_measured"].setdefault(precision, [])
    measured.append(measure_peak(device, precision))
    sitting["matmul_flop_per_s"][precision] = max(measured)


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per preset and comparator, and the machine
    (the GPU or the CPU). The utilisation column (training FLOP/s over the matrix-product rate
    in the run's precision) and the GPU memory column appear when some run has them."""
    summary = summarize_all(result["runs"])
    comparators = [n for n in summary if any(r.get("comparator") for r in result["runs"]
                                             if r["preset"] == n)]
    used = any(s.get("utilisation") is not None for s in summary.values())
    gpu = any(s.get("gpu_peak_memory_mb") is not None for s in summary.values())
    head = ("| preset | test accuracy, mean ± std [95% interval] (per seed) | seeds | wall time "
            "per run, mean (max) |" + "".join(f" vs {c} |" for c in comparators)
            + (" utilisation |" if used else "") + " peak memory |"
            + (" GPU memory |" if gpu else ""))
    lines = [head, "|" + " --- |" * (5 + len(comparators) + used + gpu)]
    for preset, s in summary.items():
        acc = s["test_top1"]
        per_seed = ", ".join(f"{r['test_top1']:.2f}" for r in result["runs"]
                             if r["preset"] == preset)
        ratios = "".join(f" {s['wall_ratio'][c]:.2f}x |" for c in comparators)
        name = f"comparator `{preset}`" if preset in comparators else f"`{preset}`"
        share = s.get("utilisation")
        wall = [format_duration(s["wall_seconds"][k], precise=True) for k in ("mean", "max")]
        lines.append(f"| {name} | {acc['mean']:.2f}% ± {acc['std']:.2f}{interval(acc)} "
                     f"({per_seed}) | "
                     f"{s['seeds']} | {wall[0]} ({wall[1]}) |{ratios}"
                     + ((f" {100 * share:.0f}% |" if share is not None else " |") if used
                        else "")
                     + f" {_gb(s['peak_rss_mb'])} |"
                     + (f" {_gb(s.get('gpu_peak_memory_mb'))} |" if gpu else ""))
    where = sorted({r.get("device_name") or r.get("cpu", result.get("cpu"))
                    for r in result["runs"]})
    lines.append(f"\nMachine: {'; '.join(where)}" + ("  (runs from different machines: "
                                                     "compare with care)" if len(where) > 1
                                                     else ""))
    return "\n".join(lines)


def interval(stats: dict[str, Any]) -> str:
    """" [low, high]", the 95% interval of the mean; "" for one seed (or an older summary)."""
    if stats.get("ci_low") is None:
        return ""
    return f" [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def _gb(mb: float | None) -> str:
    return "" if mb is None else f"{mb / 1024:.2f} GB"
