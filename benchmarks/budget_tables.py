"""The docs' tables of `cifarlab train --time` (rendered by tables.py): the development runs it
chooses from (benchmarks/budget-candidates.json: validation accuracy against training
arithmetic), and a bench file's budget runs beside the presets measured on the same machine.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from cifarlab.jobs.bench import summarize_all
from cifarlab.jobs.budget import parse_duration
from cifarlab.runs import make_config
from cifarlab.runs.logs import format_duration
from cifarlab.training.flops import training_flops

HERE = Path(__file__).resolve().parent
TRAIN_IMAGES = 45_000  # the development runs hold 5,000 of CIFAR-10's 50,000 out


def _mean(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.2f}%{spread}"


def candidates_table(name: str) -> str:
    """Each candidate: its length, its training arithmetic, and its validation accuracy
    over the seeds measured (one view, and the preset's test-time views: what --time
    expects)."""
    result = json.loads((HERE / name).read_text())
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in result["runs"]:
        groups.setdefault((r["preset"], r["epochs"]), []).append(r)
    lines = ["| candidate | epochs (at 24 px) | training arithmetic | validation, 1 view | "
             "validation, the preset's test views (per seed) |", "| --- | --- | --- | --- | --- |"]
    for (preset, epochs), runs in groups.items():
        cfg = make_config(preset, epochs=epochs)
        flops = training_flops(cfg, 10, TRAIN_IMAGES)["total"]
        seeds = ", ".join(f"{r['val_top1']:.2f}" for r in runs)
        mark = " †" if any("source" in r for r in runs) else ""
        lines.append(f"| `{preset}` × {epochs}{mark} | {epochs} ({cfg.low_res_epochs}) | "
                     f"{flops / 1e12:.1f} TFLOP | "
                     f"{_mean([r['val_top1_one_view'] for r in runs])} | "
                     f"{_mean([r['val_top1'] for r in runs])} ({seeds}) |")
    ours = [r for r in result["runs"] if "source" not in r]
    where = sorted({f"{r['device_name']}, {r['precision']}" for r in ours})
    commits = sorted({r["commit"] for r in ours})
    seeds = sorted({r["seed"] for r in ours})
    imported = sorted({r["source"] for r in result["runs"] if "source" in r})
    note = (f" † From the development runs that chose the preset ({'; '.join(imported)})."
            if imported else "")
    return "\n".join([*lines, "", f"Machine: {'; '.join(where)}. Commits: {', '.join(commits)}."
                       f"{note}", "", "```bash", "python benchmarks/budget_candidates.py "
                       f"--data-dir PATH --seeds {' '.join(map(str, seeds))}", "```"])


def budget_table(name: str) -> str:
    """Each budget of a bench file: the plan of each seed, the wall time against the budget,
    the test accuracy, and the most accurate preset of the same file (the same machine) whose
    mean wall time fits that budget."""
    result = json.loads((HERE / name).read_text())
    summary = summarize_all(result["runs"])
    lines = ["| budget | plan (per seed) | wall time, mean (max) | of the budget, at most | "
             "training time, predicted → actual (per seed) | test accuracy (per seed) | "
             "best preset within the budget here |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    presets = {n: s for n, s in summary.items() if not n.startswith("--time ")
               and not any(r.get("comparator") for r in result["runs"] if r["preset"] == n)}
    budgets = sorted((e for e in summary if e.startswith("--time ")),
                     key=lambda e: parse_duration(e.split()[1]))
    for entry in budgets:
        s = summary[entry]
        budget = parse_duration(entry.split()[1])
        runs = [r for r in result["runs"] if r["preset"] == entry]
        plans = ", ".join(f"`{r['plan']['preset']}` × {r['plan']['epochs']}" for r in runs)
        share = max(r["wall_seconds"] for r in runs) / budget
        accs = ", ".join(f"{r['test_top1']:.2f}" for r in runs)
        times = ", ".join(f"{r['plan']['predicted']['train']:.0f} → {r['train_seconds']:.0f} s"
                          for r in runs)
        within = {n: p for n, p in presets.items() if p["wall_seconds"]["mean"] <= budget}
        best = max(within, key=lambda n: within[n]["test_top1"]["mean"], default=None)
        rival = (f"`{best}`: {within[best]['test_top1']['mean']:.2f}% in "
                 f"{format_duration(within[best]['wall_seconds']['mean'], precise=True)}"
                 if best else "none")
        wall = [format_duration(s["wall_seconds"][k], precise=True) for k in ("mean", "max")]
        lines.append(f"| `{entry}` | {plans} | {wall[0]} ({wall[1]}) | {100 * share:.0f}% | "
                     f"{times} | "
                     f"{s['test_top1']['mean']:.2f}% ({accs}) | {rival} |")
    return "\n".join(lines)
