"""`cifarlab export`: the model as ONNX or TorchScript, normalisation inside."""

from __future__ import annotations

import argparse

from cifarlab.cli.options import add_tta
from cifarlab.inference.export import FORMATS, export_model
from cifarlab.runs.folder import EXPORTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write the model as ONNX or TorchScript, normalisation inside",
        description="Export for use without cifarlab. Input: float RGB in [0, 1], shape "
                    "(N, 3, S, S) with S the run's image size, any N; output: logits. Class "
                    "names are stored in the file.")
    p.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--format", choices=list(FORMATS), default="onnx")
    p.add_argument("-o", "--output", metavar="FILE",
                   help=f"default: in the run folder, {' or '.join(EXPORTS.values())}")
    add_tta(p, "test-time augmentation built into the graph (default: the run's)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    r = export_model(args.checkpoint, args.format, args.output, tta=args.tta)
    print(f"wrote {r['path']} ({r['format']}, {len(r['metadata']['classes'])} classes, "
          f"tta {r['metadata']['tta']}); max logit difference to PyTorch on random input: "
          f"{r['max_abs_diff']:.2e}")
    print(f"input: {r['metadata']['input']}")
    return 0
