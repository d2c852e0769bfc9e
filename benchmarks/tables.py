"""The generated tables of README.md and the docs: the results, from the JSON files in
benchmarks/, and the options, from the settings themselves.

    python benchmarks/tables.py           # rewrite every table between its markers
    python benchmarks/tables.py --check   # only say which tables differ from their JSON

A generated table sits between `<!-- table NAME -->` and `<!-- end table -->` in a Markdown
file; NAME is `bench FILE` (a `cifarlab bench` results file: its table, the machine and the
commands), `presets` (the README's one figure per preset), `targets` (benchmarks/targets.json
against the results), `runs NAME` (a table of benchmarks/development-runs.json) or `options`
(every setting, by concern, as `cifarlab train --help` gives it), `epochs FILE`
(benchmarks/epoch_time.py's epoch times), `peak FILE` (benchmarks/machine_peak.py's rates) or
`profile FILE` (benchmarks/profile_step.py's operator time), `compare A B` (two bench
results files paired by seed, as `cifarlab compare A B` prints them), `candidates FILE`
(benchmarks/budget_candidates.py's development runs) or `budgets FILE` (a bench file's
`--time` runs against its presets; benchmarks/budget_tables.py), `audit FILE` and `planted
FILE` (benchmarks/audit_tables.py: what an audit of CIFAR-10 found, and how much of a planted
set of problems it finds), `temperatures FILE` and `bundled FILE` (benchmarks/model_tables.py:
the presets' temperatures and their checks, the models that come with cifarlab). The test
suite runs the
check, so a table edited by hand, or a JSON file or setting changed without regenerating,
fails it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from audit_tables import audit_table, planted_table
from budget_tables import budget_table, candidates_table
from model_tables import bundled_table, temperatures_table

from cifarlab.jobs.bench import markdown_table, summarize_all
from cifarlab.reporting.bench_compare import compare_benches, format_bench_comparison
from cifarlab.runs import DEFAULT_PRESET, PRESETS, Config, make_config, option_name
from cifarlab.runs.config import setting_sections
from cifarlab.runs.explain import explain_preset
from cifarlab.runs.logs import format_duration

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- table (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- end table -->)",
                   re.DOTALL)
# Where each preset's figures in the README come from: `cifarlab bench` results files, one row
# each (a machine each), else a single run of development-runs.json (table, row), else why it
# has none.
AVX2 = "cpu-2core-avx2.json"
PRESET_RESULTS = {"fast": ["cpu-2core-xeon.json", AVX2], "90": ["cpu-2core-xeon.json", AVX2],
                  "94": ["cpu-2core-94-record.json"], "95": ["cpu-2core-95.json"],
                  "seed-fast": ["cpu-2core-xeon.json", AVX2]}
SINGLE_RUNS = {"tutorial": ("starting-points", 0), "seed": ("starting-points", 1)}
UNMEASURED = {"finetune": "not measured: no pretrained weights can be downloaded here",
              "resnet18": "not measured: a GPU recipe, slow on a CPU"}


def load(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def machine(result: dict) -> str:
    """The machine as the tables name it: cores, CPU, native bf16 and GPU where recorded,
    torch."""
    cpus = sorted({r.get("cpu", result.get("cpu")).replace("(R)", "") for r in result["runs"]})
    bf16 = (" with native bf16" if result.get("native_bf16") else
            f" without native bf16 ({result['cpu_capability']}, float32)"
            if "cpu_capability" in result else "")
    gpu = f", GPU {result['gpu']}" if result.get("gpu") else ""
    return (f"{result.get('cpu_count', '?')}-core {' and '.join(cpus)}{bf16}{gpu}, torch "
            f"{result.get('torch_version', '?')}")


def commands(name: str, result: dict) -> list[str]:
    """The `cifarlab bench` sittings whose runs are in the file, as commands."""
    args, extra = list(result.get("train_args", [])), []
    while args:  # the training options, but the data folder (PATH in the docs)
        arg = args.pop(0)
        if arg == "--data-dir":
            args.pop(0)
        else:
            extra.append(arg)
    tail = f" -- {' '.join(extra)}" if extra else ""
    out = []
    for sitting in result.get("sittings", []):
        runs = [r for r in result["runs"] if r.get("started") == sitting["started"]]
        if runs:
            # the seeds it measured (a sitting stopped early ran fewer than it was given)
            seeds = ",".join(str(x) for x in sitting["seeds"] if any(r["seed"] == x for r in runs))
            names = sitting.get("comparators") or sorted(
                {r["preset"] for r in runs if r.get("comparator")})
            record = f" --compare-record {' '.join(names)}" if names else ""
            presets = [p for p in sitting["presets"] if not p.startswith("--time ")]
            budgets = [p.split()[1] for p in sitting["presets"] if p.startswith("--time ")]
            what = " ".join(presets + (["--time", *budgets] if budgets else []))
            out.append(f"cifarlab bench {what}{record} --seed-list {seeds} --data-dir PATH "
                       f"--out benchmarks/{name}{tail}")
    return list(dict.fromkeys(out))


def bench_table(name: str) -> str:
    result = load(name)
    table = markdown_table(result).split("\n\nMachine:")[0]
    lines = [table, "", f"Machine: {machine(result)}. Commits: "
             f"{', '.join(sorted({r.get('commit') or '?' for r in result['runs']}))}.", "",
             "```bash", *commands(name, result), "```"]
    return "\n".join(lines)


def presets_table() -> str:
    """One figure per preset and machine, then the commands that measured them."""
    lines = ["| preset | what it trains | test accuracy (seeds) | wall time | machine |",
             "| --- | --- | --- | --- | --- |"]
    measured: list[str] = []
    for name, preset in PRESETS.items():
        rows = [(UNMEASURED.get(name, "not measured"), "", "")]
        if name in PRESET_RESULTS:
            rows = []
            for file in PRESET_RESULTS[name]:
                result = load(file)
                s = summarize_all(result["runs"])[name]
                rows.append((f"{s['test_top1']['mean']:.2f}% ± {s['test_top1']['std']:.2f} "
                             f"({s['seeds']})",
                             format_duration(s["wall_seconds"]["mean"], precise=True),
                             machine(result).split(", torch")[0]))
                measured += [c for c in commands(file, result)
                             if name in c.split(" --")[0].split()[2:]]
        elif name in SINGLE_RUNS:
            table, row = SINGLE_RUNS[name]
            t = load("development-runs.json")["tables"][table]
            cells = dict(zip(t["columns"], t["rows"][row]["cells"], strict=True))
            rows = [(f"{cells['test top-1']} (1 run, {cells['epochs run']} epochs)",
                     cells["wall time"], t["machine"].split(",")[0])]
            measured.append(t["commands"][row])
        for i, (figure, wall, where) in enumerate(rows):
            first = f"`{name}` | {preset.description}" if i == 0 else " | "
            lines.append(f"| {first} | {figure} | {wall} | {where} |")
    return "\n".join([*lines, "", "```bash", *dict.fromkeys(measured), "```"])


def targets_table() -> str:
    lines = ["| preset | target | measured | met |", "| --- | --- | --- | --- |"]
    for t in load("targets.json")["targets"]:
        measured, met = t.get("measured"), t.get("met")
        if "results" in t:
            result = load(t["results"])
            s = summarize_all(result["runs"])[t["preset"]]
            runs = [r for r in result["runs"] if r["preset"] == t["preset"]]
            accs = ", ".join(f"{r['test_top1']:.2f}" for r in runs)
            measured = (f"{s['test_top1']['mean']:.2f}% ± {s['test_top1']['std']:.2f} ({accs}) "
                        f"in {format_duration(s['wall_seconds']['mean'], precise=True)} (at most "
                        f"{format_duration(s['wall_seconds']['max'], precise=True)})")
            checks = [min(r["test_top1"] for r in runs) >= t.get("every_seed", 0),
                      s["test_top1"]["mean"] >= t.get("mean", 0),
                      s["wall_seconds"]["mean"] <= t.get("mean_wall_s", float("inf"))]
            if "ratio_to" in t:
                ratio = s["wall_ratio"][t["ratio_to"]]
                measured += f", {ratio:.2f}x `{t['ratio_to']}`'s wall time"
                checks.append(ratio <= t["max_ratio"])
            measured += f"; {machine(result).split(', torch')[0]}"
            met = all(checks)
        lines.append(f"| `{t['preset']}` | {t['target']} | {measured} | "
                     f"{'yes' if met else 'no'} |")
    return "\n".join(lines)


def runs_table(name: str) -> str:
    tables = load("development-runs.json")["tables"]
    if name not in tables:
        raise SystemExit(f"no table {name!r} in benchmarks/development-runs.json; it has "
                         f"{', '.join(tables)}")
    t = tables[name]
    lines = ["| " + " | ".join(t["columns"]) + " |", "|" + " --- |" * len(t["columns"])]
    for row in t["rows"]:
        cells = [f"**{c}**" if row.get("chosen") and i == 0 else c
                 for i, c in enumerate(row["cells"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {t['machine']}; {t['when']}. {t['what'][0].upper()}"
                  f"{t['what'][1:]}."]
    if t.get("commands"):
        lines += ["", "```bash", *t["commands"], "```"]
    return "\n".join(lines)


def options_table() -> str:
    """Every setting as an option, in the settings' sections (as --help groups them), with
    the default preset's value and the help text."""
    groups = setting_sections()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    defaults = make_config(DEFAULT_PRESET)
    lines = []
    for title, names in groups:
        lines += [f"**{title}**", "", f"| option | `{DEFAULT_PRESET}` | what it does |",
                  "| --- | --- | --- |"]
        for name in names:
            value = getattr(defaults, name)
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
            shown = json.dumps(shown) if isinstance(shown, dict) else shown
            shown = "–" if shown is None else shown
            help_text = fields[name].metadata["help"].replace("|", "\\|")
            lines.append(f"| `{option_name(name)}` | {shown} | {help_text} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def epochs_table(name: str) -> str:
    """benchmarks/epoch_time.py's results: each command the docs show, its epoch time."""
    result = load(name)
    before = any(r["epoch_seconds_depthwise_bf16"] for r in result["networks"])
    lines = ["| command | epoch | steps (batch, size, precision) |"
             + (" depthwise layers in bf16, as before |" if before else ""),
             "| --- | --- | --- |" + (" --- |" if before else "")]
    for r in result["networks"]:
        old = r["epoch_seconds_depthwise_bf16"]
        then = f" {format_duration(old, precise=True) if old else ''} |" if before else ""
        lines.append(f"| `{r['command']}` | {format_duration(r['epoch_seconds'], precise=True)} "
                     f"| {r['steps_per_epoch']} ({r['batch_size']}, {r['image_size']} px, "
                     f"{r['precision']}) |" + then)
    flags = " --before" if before else ""
    return "\n".join([*lines, "", f"Machine: {machine_of(result)}; the median of "
                       f"{result['steps_timed']} timed steps times the steps of an epoch.", "",
                       "```bash", f"python benchmarks/epoch_time.py --data-dir PATH{flags} "
                       f"--out benchmarks/{name}", "```"])


def peak_table(name: str) -> str:
    """benchmarks/machine_peak.py's results: the matrix-product rate in each precision, then
    each preset's convolutions against the rate in its precision (files of before: bf16)."""
    result = load(name)
    peaks = result.get("matmul_flop_per_s") or {"bfloat16": result["bf16_matmul_flop_per_s"]}
    sizes = (result["matmul_by_size"] if "matmul_flop_per_s" in result
             else {"bfloat16": result["matmul_by_size"]})
    lines = ["| what | TFLOP/s | of the matrix product |", "| --- | --- | --- |"]
    for precision, rates in sizes.items():
        for n, rate in rates.items():
            lines.append(f"| {_short(precision)} matrix product {n}×{n} | {rate / 1e12:.2f} | "
                         f"{100 * rate / peaks[precision]:.0f}% |")
    for preset, entries in result["presets"].items():
        peak = peaks[entries.get("precision", "bfloat16")]
        for size, p in entries.items():
            if size == "precision":
                continue
            lines.append(f"| `{preset}`'s convolutions at {size}, forward and backward | "
                         f"{p['conv_flop_per_s'] / 1e12:.2f} | "
                         f"{100 * p['conv_flop_per_s'] / peak:.0f}% |")
    return "\n".join([*lines, "", f"Machine: {machine_of(result)}.", "", "```bash",
                       f"python benchmarks/machine_peak.py {' '.join(result['presets'])} "
                       f"--out benchmarks/{name}", "```"])


def _short(precision: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16"}.get(precision, precision)


def profile_table(name: str) -> str:
    """benchmarks/profile_step.py's results: each preset's operator time by bucket."""
    result = load(name)
    lines = []
    for preset, p in result["presets"].items():
        for prof in p["profiles"]:
            total = prof["seconds"]
            shares = ", ".join(f"{b} {100 * t / total:.0f}%" for b, t in prof["buckets"].items()
                               if t / total >= 0.005)
            optimizer = prof.get("optimizer_step_seconds")
            if optimizer:
                shares += f"; the optimizer's steps {100 * optimizer / total:.0f}% in all"
            lines.append(f"| `{preset}` | {prof['title']} (batch {p['batch_size']}, "
                         f"{p['image_size']} px, {p['precision']}) | {shares} |")
    head = ["| preset | profiled | operator time by kind |", "| --- | --- | --- |"]
    return "\n".join([*head, *lines, "", f"Machine: {machine_of(result)}.", "", "```bash",
                       *[p["command"] for p in result["presets"].values()], "```"])


def machine_of(result: dict) -> str:
    """A machine record that is not a bench file (no runs): cores, CPU or GPU, torch."""
    bf16 = (" with native bf16" if result.get("native_bf16") else
            f" without native bf16 ({result['cpu_capability']}, float32)"
            if "cpu_capability" in result else "")
    what = result.get("gpu") or result.get("cpu", "?").replace("(R)", "")
    return f"{result.get('cpu_count', '?')}-core {what}{bf16}, torch {result.get('torch_version')}"


def compare_table(names: str) -> str:
    """`cifarlab compare A B` of two results files of benchmarks/."""
    a, b = names.split()
    rows = compare_benches(load(a), load(b))
    return format_bench_comparison(rows, f"`{a}`", f"`{b}`")


# The CPU kinds the machines page compares, each by one bench file of fast, 90 and seed-fast.
KIND_FILES = ["cpu-2core-xeon.json", "cpu-2core.json", AVX2]


def kinds_table() -> str:
    """`fast`, `90` and `seed-fast` on each CPU kind measured: accuracy and wall time."""
    names = ["fast", "90", "seed-fast"]
    lines = ["| CPU (2 cores) | " + " | ".join(f"`{n}`" for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for file in KIND_FILES:
        result = load(file)
        s = summarize_all(result["runs"])
        cells = [f"{s[n]['test_top1']['mean']:.2f}% in "
                 f"{format_duration(s[n]['wall_seconds']['mean'], precise=True)}"
                 + ("" if s[n]["seeds"] == 3 else f" ({s[n]['seeds']} seed"
                    f"{'s' if s[n]['seeds'] > 1 else ''})") for n in names]
        lines.append(f"| {machine(result).split(', torch')[0]} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", "Each: the test accuracy, mean over 3 seeds unless said, and the "
                       "mean wall time of the whole `cifarlab train` process; every run and its "
                       "command in [Benchmarks](../benchmarks.md)."])


def budgets_table(name: str) -> str:
    """A bench file's `--time` runs against its presets, with the machine and commands."""
    result = load(name)
    return "\n".join([budget_table(name), "", f"Machine: {machine(result)}.", "", "```bash",
                      *commands(name, result), "```"])


def explain_block(name: str) -> str:
    """`cifarlab presets NAME --explain`, as the docs show it."""
    return "```text\n" + "\n".join(explain_preset(name)) + "\n```"


def render(name: str) -> str:
    kind, _, arg = name.partition(" ")
    makers = {"bench": bench_table, "runs": runs_table, "epochs": epochs_table,
              "peak": peak_table, "profile": profile_table, "compare": compare_table,
              "budgets": budgets_table, "candidates": candidates_table, "audit": audit_table,
              "planted": planted_table, "temperatures": temperatures_table,
              "bundled": bundled_table, "explain": explain_block}
    if kind in makers:
        return makers[kind](arg)
    return {"presets": presets_table, "targets": targets_table, "options": options_table,
            "kinds": kinds_table}[kind]()


def regenerate(check: bool) -> list[str]:
    """Every generated table brought up to date (with `check`, only compared): the files
    whose tables differ."""
    stale = []
    for path in FILES:
        text = path.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + "\n" + m.group(4),
                        text)
        if new != text:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(new)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only report tables that differ from their JSON")
    args = parser.parse_args()
    stale = regenerate(args.check)
    if stale:
        verb = "differ from their JSON" if args.check else "regenerated"
        print(f"tables {verb} in: {', '.join(stale)}", file=sys.stderr if args.check else
              sys.stdout)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
