"""Stage 8, the `cifarlab` command line: one module per subcommand, each with its parser
(`add_parser`) and its handler; here the parser is assembled and errors become one line."""

from __future__ import annotations

import argparse
import os
import sys

from cifarlab.cli import (
    bench,
    compare,
    demo,
    evaluate,
    export,
    listings,
    predict,
    report,
    runs,
    train,
    tune,
)
from cifarlab.errors import CifarlabError, TrainingInterrupted
from cifarlab.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifarlab", description="Train, evaluate and use CIFAR-10/100 image classifiers.")
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, evaluate, report, predict, export, demo, tune, bench):
        command.add_parser(sub)
    listings.add_parsers(sub)
    compare.add_parser(sub)
    runs.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # `cifarlab bench ... -- TRAIN OPTIONS`: what follows `--` goes to every training run.
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if passthrough and not getattr(args, "passthrough", False):
        parser.error(f"only `cifarlab bench` takes options after `--`, not `cifarlab "
                     f"{args.command}`")
    args.train_args = passthrough
    try:
        return args.handler(args)
    except TrainingInterrupted as e:
        print(f"cifarlab: {e}", file=sys.stderr)
        return e.exit_code
    except CifarlabError as e:
        print(f"cifarlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cifarlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left early (| head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run() -> None:
    """The `cifarlab` command and `python -m cifarlab`."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A process of a torchrun job leaves without Python's shutdown: torch's gloo worker
        # threads can still be releasing a collective's tensors then, and that aborts the
        # process (SIGABRT, "terminate called without an active exception"). Everything is
        # written and every process has passed the final barrier by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
