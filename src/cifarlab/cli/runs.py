"""`cifarlab runs`: a table of the runs in a folder."""

from __future__ import annotations

import argparse
import json

from cifarlab.errors import CifarlabError
from cifarlab.reporting.run_list import COLUMNS, format_table, list_runs, sort_rows


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="a table of the runs in a folder: what, how well, state",
                       description="One row per run folder under DIR: name, dataset, preset, "
                                   "model, epochs, best validation accuracy, test top-1, "
                                   "training time, date and state (finished, stopped, "
                                   "pruned, failed, running); tuning studies one row each.")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR",
                   help="folder of run folders (default: runs)")
    p.add_argument("--all", action="store_true", help="also every trial of tuning studies")
    p.add_argument("--sort", default="date", help="column to sort by (default: date)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.sort not in COLUMNS:
        raise CifarlabError(f"--sort takes one of {', '.join(COLUMNS)}, not {args.sort!r}")
    rows = sort_rows(list_runs(args.dir, args.all), args.sort)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no runs under {args.dir}")
    return 0
