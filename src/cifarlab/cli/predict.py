"""`cifarlab predict`: classify image files or folders of them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarlab.cli.options import add_tta
from cifarlab.data.image_files import image_extensions
from cifarlab.errors import CifarlabError
from cifarlab.inference.bundled import best_bundled, bundled_name
from cifarlab.inference.hub import PREFIX
from cifarlab.inference.predict import (
    classify_files,
    format_prediction,
    load_predictor,
    predict_files,
)
from cifarlab.runs import RunFolder
from cifarlab.runs.package import is_package


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="classify image files (PNG, JPEG, WebP, BMP, ...) or folders of them",
        description="Classify images: each is center-cropped to a square, resized to the run's "
                    "image size (32x32 for CIFAR; antialiased bicubic), normalised as in "
                    "training. One line per file; errors go to standard error and make the "
                    "exit code 1.")
    p.add_argument("inputs", nargs="+", metavar="[MODEL] IMAGE",
                   help="the model first (a run folder, checkpoint, model package, "
                        "hf-hub:ORG/NAME or a bundled model's name, see `cifarlab models`; "
                        "left out: the best bundled CIFAR-10 model), then image files or "
                        "folders")
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


def model_and_images(inputs: list[str]) -> tuple[str, list[str]]:
    """The model the inputs name first, else the best bundled one (said on standard error),
    and the images."""
    first = inputs[0]
    if is_model_source(first):
        if len(inputs) == 1:
            raise CifarlabError(f"give the images to classify after {first}")
        return first, inputs[1:]
    best = best_bundled()
    print(f"using the bundled model {best['name']} ({best['test_top1']:.2f}% on CIFAR-10's test "
          "set; its classes only); name a run folder or package first to use your own",
          file=sys.stderr)
    return best["name"], inputs


def is_model_source(arg: str) -> bool:
    """Whether `arg` names a model rather than an image: a bundled model or hub name, a run
    folder, a model package, or a file that is not an image (a checkpoint, or a mistake that
    loading will name)."""
    p = Path(arg)
    if arg.startswith(PREFIX) or bundled_name(arg):
        return True
    if p.is_dir():
        return is_package(p) or RunFolder.holds_run(p)
    return p.suffix.lower() not in image_extensions()


def handle(args: argparse.Namespace) -> int:
    if args.topk < 1 or args.batch_size < 1:
        raise CifarlabError("--topk and --batch-size must be at least 1")
    args.checkpoint, args.images = model_and_images(args.inputs)
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
