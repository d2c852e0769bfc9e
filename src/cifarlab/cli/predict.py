"""`cifarlab predict`: classify image files or folders of them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarlab.cli.options import add_tta
from cifarlab.errors import CifarlabError
from cifarlab.inference.predict import (
    classify_files,
    format_prediction,
    load_predictor,
    predict_files,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="classify image files (PNG, JPEG, WebP, BMP, ...) or folders of them",
        description="Classify images: each is center-cropped to a square, resized to the run's "
                    "image size (32x32 for CIFAR; antialiased bicubic), normalised as in "
                    "training. One line per file; errors go to standard error and make the "
                    "exit code 1.")
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--topk", type=int, default=5, help="classes shown per image (default: 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--batch-size", type=int, default=256)
    add_tta(p, "test-time augmentation (default: the run's setting)")
    p.add_argument("--device", default="auto")
    p.add_argument("--explain", metavar="DIR",
                   help="also write each image with a heatmap of what the top class came from "
                        "(Grad-CAM) over it, as DIR/NAME.heatmap.png")
    p.add_argument("--layer", help="--explain: the layer to explain, as the network names it "
                                   "(default: the end of its last convolutional stage)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.topk < 1 or args.batch_size < 1:
        raise CifarlabError("--topk and --batch-size must be at least 1")
    if args.layer and not args.explain:
        raise CifarlabError("--layer chooses the layer --explain draws; add --explain DIR")
    failed = 0
    for r in results_of(args):
        if "error" in r:
            failed += 1
            print(f"cifarlab: error: {r['file']}: {r['error']}", file=sys.stderr, flush=True)
        else:
            print(json.dumps(r) if args.json else format_prediction(r), flush=True)
    if failed:
        print(f"cifarlab: {failed} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def results_of(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """predict_files' results; with --explain, all at once, each with its heatmap's file."""
    if not args.explain:
        yield from predict_files(args.checkpoint, args.images, topk=args.topk,
                                 batch_size=args.batch_size, device=args.device, tta=args.tta)
        return
    from cifarlab.inference.heatmaps import explain_results

    model = load_predictor(args.checkpoint, args.device, args.tta)
    results = list(classify_files(model, args.images, topk=args.topk,
                                  batch_size=args.batch_size, keep_pixels=True))
    layer = explain_results(model, results, Path(args.explain), layer=args.layer)
    print(f"heatmaps (Grad-CAM of layer {layer}) in {args.explain}", file=sys.stderr)
    for r in results:
        r.pop("pixels", None)
        yield r
