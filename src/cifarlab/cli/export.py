"""`cifarlab export`: the model as ONNX or TorchScript (normalisation inside), or as a model
package folder (safetensors, config.json, model card)."""

from __future__ import annotations

import argparse

from cifarlab.cli.options import add_tta
from cifarlab.errors import CifarlabError
from cifarlab.inference.export import FORMATS, export_model
from cifarlab.runs.folder import EXPORTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write the model as ONNX, TorchScript, or a model package to share",
        description="Export for use without cifarlab. onnx, torchscript: input float RGB in "
                    "[0, 1], shape (N, 3, S, S) with S the run's image size, any N; output: "
                    "logits; class names are stored in the file. package: a folder with "
                    "model.safetensors, config.json (timm's hub layout) and a model card "
                    "README.md, which cifarlab, timm (timm: runs) and the Hugging Face hub "
                    "read.")
    p.add_argument("checkpoint", metavar="RUN_OR_PACKAGE")
    p.add_argument("--format", choices=[*FORMATS, "package"], default="onnx")
    p.add_argument("-o", "--output", metavar="PATH",
                   help=f"default: in the run folder, {' or '.join(EXPORTS.values())}; "
                        "a package needs a new or empty folder")
    add_tta(p, "test-time augmentation built into the graph (default: the run's)")
    p.add_argument("--bf16-weights", action="store_true",
                   help="package: store the conv and linear weights in bfloat16, half the "
                        "size (they compute in float32 when loaded; compare the accuracy "
                        "with cifarlab evaluate)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.format == "package":
        return handle_package(args)
    if args.bf16_weights:
        raise CifarlabError("--bf16-weights is for --format package")
    r = export_model(args.checkpoint, args.format, args.output, tta=args.tta)
    print(f"wrote {r['path']} ({r['format']}, {len(r['metadata']['classes'])} classes, "
          f"tta {r['metadata']['tta']}); max logit difference to PyTorch on random input: "
          f"{r['max_abs_diff']:.2e}")
    print(f"input: {r['metadata']['input']}")
    return 0


def handle_package(args: argparse.Namespace) -> int:
    from cifarlab.inference.package import export_package

    if not args.output:
        raise CifarlabError("a package is a folder of its own: give it with -o DIR")
    if args.tta:
        raise CifarlabError("a package keeps the run's test-time augmentation (config.json "
                            "says which); drop --tta")
    r = export_package(args.checkpoint, args.output, bf16_weights=args.bf16_weights)
    own = r["metadata"]
    print(f"wrote {r['path']}: model.safetensors, config.json, README.md ({own['model']}, "
          f"{own['num_classes']} classes, tta {own['tta']}"
          + (f", temperature {own['temperature']:.4f}" if own["temperature"] else "")
          + f"); loaded back, max logit difference to the source: {r['max_abs_diff']:.2e}")
    print(f"share it on the Hugging Face hub: hf upload ORG/NAME {r['path']} .")
    return 0
