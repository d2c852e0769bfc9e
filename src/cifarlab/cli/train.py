"""`cifarlab train`: train a model (a preset, a config file, options), or resume a run."""

from __future__ import annotations

import argparse
import time

from cifarlab.cli.options import add_config_options, settings_of
from cifarlab.errors import CifarlabError
from cifarlab.jobs.training_run import resume, train
from cifarlab.runs import DEFAULT_PRESET, PRESETS, make_config
from cifarlab.runtime import process_age

DESCRIPTION = ("Train a model, then evaluate the best-validation weights on the test set. "
               "Settings come from the preset, then --config FILE, then the options below.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model, then evaluate it on the test set",
                       description=DESCRIPTION)
    add_train_options(p)
    p.set_defaults(handler=handle)


def parse_train_options(argv: list[str]) -> argparse.Namespace:
    """`cifarlab train`'s options (another command's, passed on to it) read as train reads
    them: the one owner of their meaning."""
    p = argparse.ArgumentParser(prog="cifarlab train", description=DESCRIPTION)
    add_train_options(p)
    return p.parse_args(argv)


def add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=list(PRESETS), default=argparse.SUPPRESS,
                   help=f"named configuration (default: {DEFAULT_PRESET})")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="TOML, YAML or JSON file with the same settings")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing; the log is still written to the run folder")
    p.add_argument("--time", metavar="BUDGET", default=argparse.SUPPRESS,
                   help="train the best model that fits this wall-clock time on this machine, "
                        "test and report included (90s, 2m, 1h30m): a short probe measures "
                        "the machine, then the network and epochs are chosen (with --preset: "
                        "its epochs)")
    p.add_argument("--resume", metavar="RUN_DIR", default=argparse.SUPPRESS,
                   help="continue a stopped run from its last.pt, with its own settings "
                        "(only --device, --num-threads, --data-dir may be given)")
    add_config_options(p)


def handle(args: argparse.Namespace) -> int:
    preset = getattr(args, "preset", None)
    config_file = getattr(args, "config", None)
    settings = settings_of(args)
    if hasattr(args, "resume"):
        if preset or config_file or hasattr(args, "time"):
            raise CifarlabError("--resume continues with the run's own settings; drop "
                                "--preset, --config and --time")
        resume(args.resume, quiet=args.quiet, **settings)
        return 0
    if hasattr(args, "time"):  # counted from the process's start, as a user's clock does
        train(preset=preset, config_file=config_file, quiet=args.quiet, budget=args.time,
              started=time.time() - process_age(), **settings)
        return 0
    train(make_config(preset, config_file, **settings), quiet=args.quiet)
    return 0
