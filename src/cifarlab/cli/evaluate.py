"""`cifarlab evaluate`: a run's test accuracy, per-class table and confusion matrix."""

from __future__ import annotations

import argparse
import json
import sys

from cifarlab.cli.options import add_tta
from cifarlab.errors import CifarlabError
from cifarlab.inference import evaluate
from cifarlab.inference.calibration import calibrate
from cifarlab.reporting.tables import format_calibration, format_confusion, format_per_class


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy, per-class table, confusion matrix")
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--data-dir", help="dataset folder (default: the one used in training)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--batch-size", type=int, help="default: the run's eval batch size")
    add_tta(p, "test-time augmentation (default: the run's setting)")
    p.add_argument("--tta-share", type=float, help="share of each batch, the least sure, "
                   "that gets the test-time views (default: the run's setting)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--other-data", action="store_true",
                   help="score it on images other than those the run recorded for the split "
                        "(an edited image folder, another copy of the test set)")
    p.add_argument("--exclude", metavar="FILE",
                   help="an audit's JSON (cifarlab audit) or a list of images: also score the "
                        "split without the leaked, the mislabeled or the listed images")
    p.add_argument("--calibrate", action="store_true",
                   help="fit a temperature on the validation split (never the test set), save "
                        "it with the run for predict, export and the demo, and show the test "
                        "figures before and after")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise CifarlabError("--batch-size must be at least 1")
    if args.tta_share is not None and not 0 <= args.tta_share <= 1:
        raise CifarlabError("--tta-share must be in [0, 1] (1 = every image gets all views)")
    if args.calibrate:
        return handle_calibrate(args)
    m = evaluate(args.checkpoint, args.data_dir, split=args.split, batch_size=args.batch_size,
                 device=args.device, tta=args.tta, tta_share=args.tta_share,
                 other_data=args.other_data, exclude=args.exclude)
    if args.split == "test" and m["split"] != "test":
        print("no test set (the image folder has no test/): the validation split instead",
              file=sys.stderr)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"{m['split']} accuracy: top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  "
          f"loss {m['loss']:.4f}  ({m['count']} images, {m['checkpoint']}"
          + (f", temperature {m['temperature']:.4f}" if m["temperature"] else "") + ")")
    for reason, s in (m.get("without") or {}).items():
        print(f"  without the {s['left_out']} {reason} images: top-1 "
              + (f"{s['top1']:.2f}% ({s['images']} images)" if s["top1"] is not None
                 else "no image left"))
    print(format_calibration(m))
    print(format_per_class(m))
    print(format_confusion(m))
    return 0


def handle_calibrate(args: argparse.Namespace) -> int:
    if args.split != "test" or args.tta or args.tta_share is not None:
        raise CifarlabError("--calibrate fits on the validation split with the run's own "
                            "test-time augmentation; drop --split, --tta and --tta-share")
    r = calibrate(args.checkpoint, data_dir=args.data_dir, device=args.device,
                  batch_size=args.batch_size)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    b = r["test_before"]
    a = r["test_after"]
    print(f"temperature {r['temperature']:.4f}, fitted on {r['val_images']} validation images "
          f"(their NLL {r['val_nll_before']:.4f} -> {r['val_nll_after']:.4f}); saved with the "
          "run, used from now on by predict, export, report and demo")
    print(f"test set, before -> after: ECE {b['ece']:.2f}% -> {a['ece']:.2f}%, NLL "
          f"{b['nll']:.4f} -> {a['nll']:.4f}, Brier {b['brier']:.4f} -> {a['brier']:.4f}; "
          f"top-1 {a['top1']:.2f}% (unchanged: the same predictions)")
    return 0
