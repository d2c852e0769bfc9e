"""`cifarlab compare A.json B.json`: two `cifarlab bench` results files, preset by preset, as
paired differences over the seeds both measured (B minus A), so that what a seed does to both
(its initialisation, its data order) cancels out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.intervals import paired_difference, summary


def load_bench(path: str | os.PathLike) -> dict[str, Any]:
    """A bench results file, checked to hold runs."""
    p = Path(path)
    try:
        result = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise CifarlabError(f"cannot read {p}: {e.strerror or e}") from None
    except ValueError as e:
        raise CifarlabError(f"{p} is not JSON ({e}); give results files of cifarlab bench"
                            ) from None
    runs = result.get("runs") if isinstance(result, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and {"preset", "seed",
                                             "test_top1", "wall_seconds"} <= r.keys()
                                             for r in runs):
        raise CifarlabError(f"{p} is not a results file of cifarlab bench (no runs with "
                            "preset, seed, test_top1 and wall_seconds)")
    return result


def _by_seed(result: dict[str, Any], preset: str, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in result["runs"] if r["preset"] == preset}


def compare_benches(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per preset that both files measured on a common seed: each file's accuracy over those
    seeds, and the paired difference of accuracy and of wall time with their 95% intervals."""
    presets = [p for p in dict.fromkeys(r["preset"] for r in a["runs"])
               if any(r["preset"] == p for r in b["runs"])]
    rows = []
    for preset in presets:
        acc_a = _by_seed(a, preset, "test_top1")
        acc_b = _by_seed(b, preset, "test_top1")
        seeds = sorted(set(acc_a) & set(acc_b))
        if not seeds:
            continue
        rows.append({
            "preset": preset, "seeds": seeds,
            "a": summary([acc_a[s] for s in seeds]), "b": summary([acc_b[s] for s in seeds]),
            "accuracy": paired_difference(acc_a, acc_b),
            "wall_seconds": paired_difference(_by_seed(a, preset, "wall_seconds"),
                                              _by_seed(b, preset, "wall_seconds"))})
    if not rows:
        raise CifarlabError("the two results files share no preset measured on the same seed: "
                            "a paired comparison needs the same presets and seeds in both")
    return rows


def _diff(d: dict[str, Any], unit: str) -> str:
    if d["ci_low"] is None:
        return f"{d['mean']:+.2f}{unit} (one seed: no interval)"
    return f"{d['mean']:+.2f}{unit} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]"


def format_bench_comparison(rows: list[dict[str, Any]], a_name: str, b_name: str) -> str:
    """The comparison as a Markdown table, then how to read it."""
    lines = [f"| preset | seeds | {a_name} | {b_name} | accuracy, B - A [95% interval] | "
             "wall time, B - A [95% interval] |", "|" + " --- |" * 6]
    for r in rows:
        lines.append(f"| `{r['preset']}` | {', '.join(map(str, r['seeds']))} | "
                     f"{r['a']['mean']:.2f}% | {r['b']['mean']:.2f}% | "
                     f"{_diff(r['accuracy'], ' pt')} | {_diff(r['wall_seconds'], ' s')} |")
    lines.append(f"\nA = {a_name}, B = {b_name}; differences are paired by seed (Student's t "
                 "over the per-seed differences). An interval that holds 0 means these seeds "
                 "cannot tell the two apart.")
    return "\n".join(lines)
