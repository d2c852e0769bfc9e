"""The `cifarlab` command line: train, evaluate, report, predict, export, tune, bench, runs,
compare, models, presets. Parsing and errors here; what each command does in commands.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing

from cifarlab import commands
from cifarlab.config import (
    DEFAULT_PRESET,
    PRESETS,
    TTA_CHOICES,
    Config,
    field_types,
    make_config,
    option_name,
)
from cifarlab.errors import CifarlabError
from cifarlab.runs import TrainingInterrupted


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per Config field; unset options leave the preset's value alone."""
    defaults = make_config(DEFAULT_PRESET)
    hints = field_types()
    for f in dataclasses.fields(Config):
        if f.name == "preset":
            continue
        hint, default = hints[f.name], getattr(defaults, f.name)
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        if isinstance(default, dict):
            shown = json.dumps(default)
        help_text = f.metadata["help"] + ("" if default is None else f" (default: {shown})")
        help_text = help_text.replace("%", "%%")
        kw: dict[str, typing.Any] = dict(default=argparse.SUPPRESS, help=help_text)
        if hint is bool or hint == (bool | None):
            parser.add_argument(option_name(f.name), action=argparse.BooleanOptionalAction, **kw)
            continue
        tuple_hint = next((h for h in (hint, *typing.get_args(hint))
                           if typing.get_origin(h) is tuple), None)  # also `tuple | None`
        if tuple_hint is not None:
            args = typing.get_args(tuple_hint)
            kw.update(nargs="+" if args[-1] is Ellipsis else len(args), metavar="X")
        elif "choices" in f.metadata:
            kw.update(choices=f.metadata["choices"])
        else:
            kw.update(metavar=f.name.upper())
        parser.add_argument(option_name(f.name), **kw)


def _add_tta(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--tta for commands that use a trained run."""
    parser.add_argument("--tta", choices=TTA_CHOICES, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifarlab", description="Train, evaluate and use CIFAR-10/100 image classifiers.")
    from cifarlab.version import __version__

    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train", help="train a model, then evaluate it on the test set",
        description="Train a model, then evaluate the best-validation weights on the test set. "
                    "Settings come from the preset, then --config FILE, then the options below.")
    train.add_argument("--preset", choices=list(PRESETS), default=argparse.SUPPRESS,
                       help=f"named configuration (default: {DEFAULT_PRESET})")
    train.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="TOML, YAML or JSON file with the same settings")
    train.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print nothing; the log is still written to the run folder")
    train.add_argument("--resume", metavar="RUN_DIR", default=argparse.SUPPRESS,
                       help="continue a stopped run from its last.pt, with its own settings "
                            "(only --device, --num-threads, --data-dir may be given)")
    _add_config_options(train)

    ev = sub.add_parser("evaluate", help="test accuracy, per-class table, confusion matrix")
    ev.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    ev.add_argument("--data-dir", help="dataset folder (default: the one used in training)")
    ev.add_argument("--split", choices=("test", "val"), default="test")
    ev.add_argument("--batch-size", type=int, help="default: the run's eval batch size")
    _add_tta(ev, "test-time augmentation (default: the run's setting)")
    ev.add_argument("--tta-share", type=float, help="share of each batch, the least sure, "
                    "that gets the test-time views (default: the run's setting)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")

    rep = sub.add_parser(
        "report", help="draw the pictures and report.html of a run folder",
        description="Evaluate a run's chosen weights on the test set again and write "
                    "curves.png, confusion.png, per_class.png, predictions.png, mistakes.png "
                    "and a self-contained report.html into the run folder.")
    rep.add_argument("run_dir", metavar="RUN_DIR")
    rep.add_argument("--data-dir", help="dataset folder (default: the one used in training)")
    rep.add_argument("--device", default="auto")

    pr = sub.add_parser(
        "predict", help="classify image files (PNG, JPEG, WebP, BMP, ...) or folders of them",
        description="Classify images: each is center-cropped to a square, resized to the run's "
                    "image size (32x32 for CIFAR; antialiased bicubic), normalised as in "
                    "training. One line per file; "
                    "errors go to standard error and make the exit code 1.")
    pr.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    pr.add_argument("--topk", type=int, default=5, help="classes shown per image (default: 5)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--batch-size", type=int, default=256)
    _add_tta(pr, "test-time augmentation (default: the run's setting)")
    pr.add_argument("--device", default="auto")

    ex = sub.add_parser(
        "export", help="write the model as ONNX or TorchScript, normalisation inside",
        description="Export for use without cifarlab. Input: float RGB in [0, 1], shape "
                    "(N, 3, 32, 32), any N; output: logits. Class names are stored in the file.")
    ex.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    ex.add_argument("-o", "--output", metavar="FILE",
                    help="default: RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt")
    _add_tta(ex, "test-time augmentation built into the graph (default: the run's)")

    tu = sub.add_parser(
        "tune", help="hyperparameter search with Optuna (TPE, median pruning, shared storage)",
        description="Search hyperparameters on the validation split; then evaluate the best "
                    "trial's checkpoint once on the test set. Several workers share a study by "
                    "giving the same --storage and --study.")
    tu.add_argument("--preset", choices=list(PRESETS), help=f"(default: {DEFAULT_PRESET})")
    tu.add_argument("--config", metavar="FILE", help="settings every trial starts from; its "
                    "`tune` table, if any, is the search space")
    tu.add_argument("--space", metavar="FILE", help="search space (TOML/YAML/JSON): setting = "
                    "{low, high, log, step} or {choices}; default: lr, weight_decay, "
                    "label_smoothing, batch_size, epochs")
    tu.add_argument("--trials", type=int, required=True, help="trials this worker runs")
    tu.add_argument("--timeout", type=float, metavar="SECONDS",
                    help="start no new trial after this long")
    tu.add_argument("--storage", metavar="URL", help="sqlite:///FILE, postgresql://..., "
                    "mysql://... (default: sqlite in the study's folder)")
    tu.add_argument("--study", help="study name (default: cifarlab-PRESET)")
    tu.add_argument("--runs-dir", default="runs/tune", help="trial run folders go in "
                    "RUNS_DIR/STUDY/ (default: runs/tune)")
    tu.add_argument("--data-dir", help="dataset folder")
    tu.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler")
    tu.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS",
                    help="a trial silent for twice this long is marked failed (default: 60)")

    b = sub.add_parser(
        "bench", help="run presets over several seeds: accuracy, wall time, peak memory",
        description="Run each preset once per seed, each as its own `cifarlab train` process, "
                    "and write accuracy (mean ± std), wall time and peak memory to a JSON file. "
                    "Options after `--` go to every `cifarlab train`.")
    b.add_argument("presets", nargs="*", metavar="PRESET", help=f"of: {', '.join(PRESETS)}")
    b.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default: 1)")
    b.add_argument("--seed-list", metavar="S,S,...", help="run these seeds instead (e.g. 2,3) "
                   "and merge them into --out if it exists: measure long presets in sittings")
    b.add_argument("--compare-record", action="store_true",
                   help="also run the public record's recipe (airbench94_muon, from "
                        "benchmarks/ in a source checkout) with the same seeds, and give each "
                        "preset's wall time as a ratio to it")
    b.add_argument("--data-dir", help="dataset folder, passed to every run")
    b.add_argument("--out", default="bench.json", help="results file (default: bench.json)")
    b.add_argument("--runs-dir", help="where the run folders go (default: a temporary folder)")
    b.add_argument("--table", metavar="RESULTS", help="only print RESULTS as a Markdown table")

    m = sub.add_parser("models", help="list cifarlab's models, or torchvision's or timm's",
                       description="cifarlab's own networks; with --source, the classifiers "
                                   "of torchvision (tv) or timm, usable as --model tv:NAME or "
                                   "--model timm:NAME")
    m.add_argument("--source", choices=("tv", "timm"), help="list this library's models")
    m.add_argument("--filter", metavar="PATTERN",
                   help="only names matching this glob pattern or containing this text")
    sub.add_parser("presets", help="list the named presets and what they set")
    co = sub.add_parser("compare", help="finished runs side by side in one HTML page",
                        description="Curves overlaid, the settings that differ, accuracy and "
                                    "its changes, per-class accuracy, and for two runs the "
                                    "change in the confusion matrix, in one self-contained "
                                    "page.")
    co.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run folders")
    co.add_argument("-o", "--output", default="compare.html",
                    help="the page to write (default: compare.html)")
    co.add_argument("--pictures", metavar="DIR", help="also keep the pictures as PNG files here")
    ru = sub.add_parser("runs", help="a table of the runs in a folder: what, how well, state",
                        description="One row per run folder under DIR: name, dataset, preset, "
                                    "model, epochs, best validation accuracy, test top-1, "
                                    "training time, date and state (finished, stopped, "
                                    "pruned, failed, running); tuning studies one row each.")
    ru.add_argument("dir", nargs="?", default="runs", metavar="DIR",
                    help="folder of run folders (default: runs)")
    ru.add_argument("--all", action="store_true", help="also every trial of tuning studies")
    ru.add_argument("--sort", default="date", help="column to sort by (default: date)")
    ru.add_argument("--json", action="store_true", help="the rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `cifarlab bench ... -- TRAIN OPTIONS`: what follows `--` goes to every training run.
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    if command == "bench":
        args["train_args"] = passthrough
    try:
        return getattr(commands, f"cmd_{command}")(args)
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
