"""`cifarlab report`: draw a run's pictures and report.html again."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="draw the pictures and report.html of a run folder",
        description="Evaluate a run's chosen weights on the test set again and write "
                    "curves.png, confusion.png, per_class.png, predictions.png, mistakes.png "
                    "and a self-contained report.html into the run folder (for a model "
                    "package: into PACKAGE-report/ beside it).")
    p.add_argument("run_dir", metavar="RUN_OR_PACKAGE")
    p.add_argument("--data-dir", help="dataset folder (default: the one used in training)")
    p.add_argument("--other-data", action="store_true",
                   help="score it on test images other than those the run recorded")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from cifarlab.reporting.report import report_run  # matplotlib: only when drawing

    path = report_run(args.run_dir, args.data_dir, args.device, args.other_data)
    print(f"wrote {path} and its pictures")
    return 0
