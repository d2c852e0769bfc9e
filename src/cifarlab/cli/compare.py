"""`cifarlab compare`: finished runs side by side in one page, or two bench results files as
paired differences."""

from __future__ import annotations

import argparse
from pathlib import Path

from cifarlab.errors import CifarlabError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="finished runs side by side in one HTML page, or two "
                                       "bench results paired by seed",
                       description="Run folders: curves overlaid, the settings that differ, "
                                   "accuracy, macro-F1 and calibration with their changes, "
                                   "per-class accuracy, and for two runs the change in the "
                                   "confusion matrix, in one self-contained page. Two "
                                   "`cifarlab bench` results files (.json): per preset, the "
                                   "paired difference of accuracy and wall time over the "
                                   "seeds both measured, with its 95% interval.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_BENCH_JSON",
                   help="two or more run folders, or two bench results files")
    p.add_argument("-o", "--output", default="compare.html",
                   help="the page to write (default: compare.html)")
    p.add_argument("--pictures", metavar="DIR", help="also keep the pictures as PNG files here")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    benches = [Path(r).suffix == ".json" for r in args.runs]
    if any(benches):
        if not all(benches) or len(args.runs) != 2:
            raise CifarlabError("compare takes run folders, or exactly two bench results "
                                "files (.json), not a mix")
        from cifarlab.reporting.bench_compare import (
            compare_benches,
            format_bench_comparison,
            load_bench,
        )

        a, b = (load_bench(p) for p in args.runs)
        print(format_bench_comparison(compare_benches(a, b), *args.runs))
        return 0
    from cifarlab.reporting.compare import compare_runs  # matplotlib: only when drawing

    print(f"wrote {compare_runs(args.runs, args.output, args.pictures)}")
    return 0
