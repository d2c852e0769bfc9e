"""`cifarlab compare`: finished runs side by side in one page."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="finished runs side by side in one HTML page",
                       description="Curves overlaid, the settings that differ, accuracy and "
                                   "its changes, per-class accuracy, and for two runs the "
                                   "change in the confusion matrix, in one self-contained "
                                   "page.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run folders")
    p.add_argument("-o", "--output", default="compare.html",
                   help="the page to write (default: compare.html)")
    p.add_argument("--pictures", metavar="DIR", help="also keep the pictures as PNG files here")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from cifarlab.reporting.compare import compare_runs  # matplotlib: only when drawing

    print(f"wrote {compare_runs(args.runs, args.output, args.pictures)}")
    return 0
