"""`cifarlab audit`: likely wrong labels, copies, leakage and a data check of a dataset."""

from __future__ import annotations

import argparse
import json

from cifarlab.data import DATASET_CHOICES
from cifarlab.runs import PRESETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    from cifarlab.jobs.audit import AUDIT_PRESET, FOLDS

    p = sub.add_parser(
        "audit", help="find likely wrong labels, copies, train/test leakage, flat images",
        description="Audit a dataset: K fast models by cross-validation give every image a "
                    "prediction from a model that never saw it; confident learning ranks the "
                    "labels that are likely wrong; identical and near copies are found within "
                    "and across splits (a test image the training split holds too is leakage); "
                    "class balance, image sizes and unreadable files are checked. Writes "
                    "audit.json and audit.html into --out; `cifarlab train --exclude "
                    "OUT/audit.json` trains without the flagged training images.")
    p.add_argument("--dataset", choices=DATASET_CHOICES, default="cifar10")
    p.add_argument("--data-dir", help="the dataset folder (CIFAR: holding cifar-10-batches-py/; "
                                      "folder: PATH/train/CLASS/IMAGE, optional val/, test/)")
    p.add_argument("--out", help="the audit's folder (default: audits/DATASET); an earlier "
                                 "audit's folder reuses the fold models it finished")
    p.add_argument("--folds", type=int, default=FOLDS,
                   help=f"cross-validation folds (default: {FOLDS})")
    p.add_argument("--preset", choices=list(PRESETS), default=AUDIT_PRESET,
                   help=f"recipe of the fold models (default: {AUDIT_PRESET})")
    p.add_argument("--epochs", type=int, help="epochs of the fold models (default: the "
                                              "preset's)")
    p.add_argument("--batch-size", type=int, help="batch size of the fold models (default: the "
                                                  "preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the models")
    p.add_argument("--image-size", type=int, default=32,
                   help="size an image folder is decoded at (default: 32)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading a missing CIFAR dataset")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print audit.json's content")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from cifarlab.jobs.audit import audit

    extra = {k: v for k in ("epochs", "batch_size") if (v := getattr(args, k)) is not None}
    record = audit(args.data_dir, dataset=args.dataset, out=args.out, folds=args.folds,
                   preset=args.preset, seed=args.seed, image_size=args.image_size,
                   device=args.device, download=args.download,
                   quiet=args.quiet or args.json, **extra)
    if args.json:
        print(json.dumps(record, indent=1))
    return 0
