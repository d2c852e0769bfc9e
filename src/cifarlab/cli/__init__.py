"""Stage 8, the `cifarlab` command line: one module per subcommand, each with its parser
(`add_parser`) and its handler; here the parser is assembled and errors become one line."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from cifarlab.cli import (
    audit,
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
from cifarlab.errors import CifarlabError, Terminated, TrainingInterrupted, os_error_line
from cifarlab.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifarlab", description="Train, evaluate and use CIFAR-10/100 image classifiers.")
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, evaluate, report, predict, export, demo, audit, tune, bench):
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
        with terminate_as_interrupt():
            return args.handler(args)
    except TrainingInterrupted as e:
        print(f"cifarlab: {e}", file=sys.stderr)
        return e.exit_code
    except CifarlabError as e:
        print(f"cifarlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        stopped_by = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
        print(f"cifarlab: stopped by {stopped_by}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    except BrokenPipeError:  # the reader left early (| head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # the file system said no, where no command expected it to
        print(f"cifarlab: error: {os_error_line(e)}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` wherever the command is (training installs its own handler
    while it trains), so that every command leaves by the same path as on Ctrl-C. Not under
    torchrun: its agent stops a group with SIGTERM, and a process waiting in a collective
    would run a Python handler only once the collective returns."""
    if (threading.current_thread() is not threading.main_thread()  # signals: main thread only
            or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
