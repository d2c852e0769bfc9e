"""`cifarlab demo`: a page on this machine to try a model by dropping images on it."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="a page to try a model: drop an image, see the top-5 classes",
        description="Serve a Gradio page (pip install 'cifarlab[demo]'): drop or pick an "
                    "image, or one of the test set's, and see the top-5 classes, the image as "
                    "the network sees it and the time it took; many files give a table to "
                    "download as CSV. The same is an HTTP API (see the page's 'Use via API').")
    p.add_argument("checkpoint", metavar="MODEL", nargs="?",
                   help="a run folder, checkpoint, model package, hf-hub:ORG/NAME or a bundled "
                        "model's name (default: the best bundled CIFAR-10 model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="default: 7860")
    p.add_argument("--data-dir", help="the dataset folder, for test images to pick (default: "
                                      "the run's)")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from cifarlab.inference.bundled import best_bundled
    from cifarlab.jobs.demo import serve  # Gradio: only when serving

    serve(args.checkpoint or best_bundled()["name"], host=args.host, port=args.port,
          device=args.device, data_dir=args.data_dir)
    return 0
