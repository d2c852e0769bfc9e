"""`cifarlab bench`: presets over several seeds, each in its own process; accuracy, wall time
and peak memory in a JSON file; the comparators of a source checkout beside them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cifarlab.cli.options import settings_of
from cifarlab.cli.train import parse_train_options
from cifarlab.errors import CifarlabError
from cifarlab.jobs.bench import bench, budget_entry, find_comparators, markdown_table
from cifarlab.jobs.budget import parse_duration
from cifarlab.runs import PRESETS, Config, make_config, option_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run presets over several seeds: accuracy, wall time, peak memory",
        description="Run each preset once per seed, each as its own `cifarlab train` process, "
                    "and write accuracy (mean ± std), wall time and peak memory to a JSON file. "
                    "Options after `--` go to every `cifarlab train`.")
    p.add_argument("presets", nargs="*", metavar="PRESET", help=f"of: {', '.join(PRESETS)}")
    p.add_argument("--time", nargs="+", default=[], metavar="BUDGET",
                   help="also run `cifarlab train --time BUDGET` for each budget (90s, 2m, "
                        "...): its wall time against the budget, beside the presets")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default: 1)")
    p.add_argument("--seed-list", metavar="S,S,...", help="run these seeds instead (e.g. 2,3) "
                   "and merge them into --out if it exists: measure long presets in sittings")
    p.add_argument("--compare-record", nargs="*", metavar="NAME",
                   help="also run the comparators (other programs' recipes, such as the public "
                        "record's) listed in benchmarks/comparators.json of a source checkout, "
                        "all or those named, with the same seeds, and give each preset's wall "
                        "time as a ratio to theirs")
    p.add_argument("--benchmarks-dir", default="benchmarks", metavar="DIR",
                   help="where comparators.json is (default: ./benchmarks)")
    p.add_argument("--data-dir", help="dataset folder, passed to every run")
    p.add_argument("--out", default="bench.json", help="results file (default: bench.json)")
    p.add_argument("--runs-dir", help="where the run folders go (default: a temporary folder)")
    p.add_argument("--table", metavar="RESULTS", help="only print RESULTS as a Markdown table")
    p.set_defaults(handler=handle, passthrough=True)


def seed_list(args: argparse.Namespace) -> list[int]:
    if args.seeds < 1:
        raise CifarlabError("--seeds must be at least 1")
    if not args.seed_list:
        return list(range(args.seeds))
    try:
        seeds = [int(s) for s in args.seed_list.split(",") if s.strip()]
    except ValueError:
        raise CifarlabError(f"--seed-list takes whole numbers separated by commas, not "
                            f"{args.seed_list!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise CifarlabError("--seed-list needs one or more different seeds, e.g. 2,3")
    return seeds


def handle(args: argparse.Namespace) -> int:
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0
    unknown = [p for p in args.presets if p not in PRESETS]
    if not (args.presets or args.time) or unknown:
        raise CifarlabError(f"name presets to run (unknown: {', '.join(unknown) or 'none'}); "
                            f"choose from {', '.join(PRESETS)}, or give --time BUDGET")
    for budget in args.time:
        parse_duration(budget)  # a mistyped budget is refused before any run
    seeds = seed_list(args)
    comparators = (find_comparators(Path(args.benchmarks_dir), args.compare_record)
                   if args.compare_record is not None else {})  # before any run
    extra = args.train_args + (["--data-dir", args.data_dir] if args.data_dir else [])
    bench(args.presets + [budget_entry(b) for b in args.time], seeds, Path(args.out),
          runs_root=Path(args.runs_dir) if args.runs_dir else None, extra=extra,
          child=child_settings(extra), comparators=comparators, merge=bool(args.seed_list))
    return 0


def child_settings(extra: list[str]) -> Config:
    """The settings the options after `--` give every run (read by train's own parser, on
    the default preset): where the data is, which dataset, whether to compile."""
    options = parse_train_options(extra)
    taken = [o for o in ("preset", "seed", "run_dir", "resume", "time") if hasattr(options, o)]
    if taken:
        raise CifarlabError(f"bench sets {', '.join(option_name(o) for o in taken)} of each "
                            "run itself; drop it after `--` (name presets and --time before)")
    return make_config(None, getattr(options, "config", None), **settings_of(options))
