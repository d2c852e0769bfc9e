"""`cifarlab models` and `cifarlab presets`: what exists."""

from __future__ import annotations

import argparse
import shlex
import time

from cifarlab.errors import CifarlabError
from cifarlab.inference.bundled import bundled_models
from cifarlab.jobs.budget import estimate
from cifarlab.models import describe_model, list_models, list_source_models
from cifarlab.runs import DEFAULT_PRESET, PRESETS
from cifarlab.runs.explain import explain_preset
from cifarlab.runs.values import as_argv
from cifarlab.runtime import process_age


def add_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list the trained models that come with cifarlab and the "
                                      "networks to train (cifarlab's, torchvision's, timm's)",
                       description="The trained CIFAR-10 models that come with cifarlab, then "
                                   "cifarlab's own networks; with --source, the classifiers "
                                   "of torchvision (tv) or timm, usable as --model tv:NAME or "
                                   "--model timm:NAME")
    m.add_argument("--source", choices=("tv", "timm"), help="list this library's models")
    m.add_argument("--filter", metavar="PATTERN",
                   help="only names matching this glob pattern or containing this text")
    m.set_defaults(handler=show_models)
    p = sub.add_parser("presets", help="list the named presets and what they set")
    p.add_argument("name", nargs="?", choices=list(PRESETS), metavar="PRESET",
                   help="only this preset")
    p.add_argument("--explain", action="store_true",
                   help="with PRESET: its recipe top to bottom, each number with its "
                        "derivation, and the settings a run resolves to")
    p.add_argument("--estimate", action="store_true",
                   help="instead, predict each preset's wall time on this machine from a "
                        "short probe of its network (a few seconds to a minute in all)")
    p.add_argument("--data-dir", help="with --estimate: the CIFAR-10 folder to count its "
                                      "loading too (default: $CIFARLAB_DATA_DIR, else ./data)")
    p.set_defaults(handler=show_presets)


def show_models(args: argparse.Namespace) -> int:
    if args.source:
        for name in list_source_models(args.source, args.filter):
            print(f"{args.source}:{name}")
        return 0
    show_bundled()
    names = [n for n in list_models() if not args.filter or args.filter in n]
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {describe_model(name)}")
    print("\nAlso any torchvision or timm classifier: --model tv:NAME or timm:NAME (list them: "
          "cifarlab models --source tv|timm [--filter PATTERN]; timm needs "
          "pip install 'cifarlab[timm]')")
    return 0


def show_bundled() -> None:
    """The trained models that come with cifarlab, to use by name."""
    models = bundled_models()
    if not models:
        return
    print("Trained CIFAR-10 models that come with cifarlab (cifarlab predict NAME photo.jpg, "
          "cifarlab demo NAME, cifarlab.load_model(NAME)):")
    for m in models:
        print(f"  {m['name']:<14} preset {m['preset']:<5} test top-1 {m['test_top1']:.2f}%  "
              f"ECE {m['test_ece']:.2f}%  {m['megabytes']:.1f} MB")
    print("\nNetworks to train (--model NAME):")


def show_presets(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list(PRESETS)
    if args.explain:
        if not args.name:
            raise CifarlabError("--explain takes one preset: cifarlab presets NAME --explain")
        print("\n".join(explain_preset(args.name)))
        return 0
    if args.estimate:
        for line in estimate(names, args.data_dir, time.time() - process_age()):
            print(line, flush=True)
        return 0
    for name in names:
        preset = PRESETS[name]
        mark = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name}{mark}: {preset.description}")
        print(f"    network (left out when you name another --model): "
              f"{shlex.join(as_argv(preset.network.values))}")
        if preset.recipe:
            print(f"    recipe: {shlex.join(as_argv(preset.recipe))}")
        if preset.temperature is not None:
            print(f"    temperature: {preset.temperature} (divides its runs' logits on "
                  "CIFAR-10; fitted on validation runs)")
    return 0
