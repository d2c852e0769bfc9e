"""`cifarlab tune`: hyperparameter search with Optuna on the validation split."""

from __future__ import annotations

import argparse

from cifarlab.errors import CifarlabError
from cifarlab.jobs.tune import HEARTBEAT, RUNS_DIR, read_space, tune
from cifarlab.runs import DEFAULT_PRESET, PRESETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="hyperparameter search with Optuna (TPE, median pruning, shared storage)",
        description="Search hyperparameters on the validation split; then evaluate the best "
                    "trial's checkpoint once on the test set. Several workers share a study by "
                    "giving the same --storage and --study.")
    p.add_argument("--preset", choices=list(PRESETS), help=f"(default: {DEFAULT_PRESET})")
    p.add_argument("--config", metavar="FILE", help="settings every trial starts from; its "
                   "`tune` table, if any, is the search space")
    p.add_argument("--space", metavar="FILE", help="search space (TOML/YAML/JSON): setting = "
                   "{low, high, log, step} or {choices}; default: lr, weight_decay, "
                   "label_smoothing, batch_size, epochs around the preset's own")
    p.add_argument("--trials", type=int, required=True, help="trials this worker runs")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="start no new trial after this long")
    p.add_argument("--storage", metavar="URL", help="sqlite:///FILE, postgresql://USER:PASS@"
                   "HOST/DB (the postgres extra), mysql://..., or journal:PATH (a journal file "
                   "on a file system all workers see; default: sqlite in the study's folder)")
    p.add_argument("--study", help="study name (default: cifarlab-PRESET)")
    p.add_argument("--runs-dir", default=RUNS_DIR, help="trial run folders go in "
                   f"RUNS_DIR/STUDY/ (default: {RUNS_DIR})")
    p.add_argument("--data-dir", help="dataset folder")
    p.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler")
    p.add_argument("--heartbeat", type=int, default=HEARTBEAT, metavar="SECONDS",
                   help="a trial silent for twice this long is marked failed (default: "
                        f"{HEARTBEAT})")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.trials < 0 or args.heartbeat < 1:
        raise CifarlabError("--trials must be 0 or more and --heartbeat at least 1")
    tune(trials=args.trials, preset=args.preset, config_file=args.config,
         space=read_space(args.space, args.config), storage=args.storage,
         study_name=args.study, runs_dir=args.runs_dir, data_dir=args.data_dir,
         timeout=args.timeout, sampler_seed=args.sampler_seed, heartbeat=args.heartbeat)
    return 0
