"""What each `cifarlab` subcommand does: its parsed arguments (a dict) in, an exit code out.
The parser and the error handling are in cli.py."""

from __future__ import annotations

import json
import sys
import typing

from cifarlab.config import DEFAULT_PRESET, PRESETS, make_config, option_name
from cifarlab.errors import CifarlabError


def cmd_train(args: dict) -> int:
    from cifarlab.training import resume, train

    preset, config_file = args.pop("preset", None), args.pop("config", None)
    quiet, resume_dir = args.pop("quiet", False), args.pop("resume", None)
    if resume_dir:
        if preset or config_file:
            raise CifarlabError("--resume continues with the run's own settings; drop "
                                "--preset and --config")
        resume(resume_dir, quiet=quiet, **args)
        return 0
    cfg = make_config(preset, config_file, **args)
    train(cfg, quiet=quiet)
    return 0


def cmd_evaluate(args: dict) -> int:
    from cifarlab.evaluation import evaluate, format_confusion, format_per_class

    if args["tta_share"] is not None and not 0 <= args["tta_share"] <= 1:
        raise CifarlabError("--tta-share must be in [0, 1] (1 = every image gets all views)")
    m = evaluate(args["checkpoint"], args["data_dir"], args["split"], args["batch_size"],
                 args["device"], tta=args["tta"], tta_share=args["tta_share"])
    if args["split"] == "test" and m["split"] != "test":
        print("no test set (the image folder has no test/): the validation split instead",
              file=sys.stderr)
    if args["json"]:
        print(json.dumps(m, indent=2))
        return 0
    print(f"{m['split']} accuracy: top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  "
          f"loss {m['loss']:.4f}  ({m['count']} images, {m['checkpoint']})")
    print(format_per_class(m))
    print(format_confusion(m))
    return 0


def cmd_report(args: dict) -> int:
    from cifarlab.report import report_run

    path = report_run(args["run_dir"], args["data_dir"], args["device"])
    print(f"wrote {path} and its pictures")
    return 0


def cmd_predict(args: dict) -> int:
    from cifarlab.predict import format_prediction, predict_files

    if args["topk"] < 1 or args["batch_size"] < 1:
        raise CifarlabError("--topk and --batch-size must be at least 1")
    failed = 0
    for r in predict_files(args["checkpoint"], args["images"], args["topk"],
                           args["batch_size"], args["device"], args["tta"]):
        if "error" in r:
            failed += 1
            print(f"cifarlab: error: {r['file']}: {r['error']}", file=sys.stderr, flush=True)
        else:
            print(json.dumps(r) if args["json"] else format_prediction(r), flush=True)
    if failed:
        print(f"cifarlab: {failed} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: dict) -> int:
    from cifarlab.export import export_model

    r = export_model(args["checkpoint"], args["format"], args["output"], args["tta"])
    print(f"wrote {r['path']} ({r['format']}, {len(r['metadata']['classes'])} classes, "
          f"tta {r['metadata']['tta']}); max logit difference to PyTorch on random input: "
          f"{r['max_abs_diff']:.2e}")
    print(f"input: {r['metadata']['input']}")
    return 0


def cmd_tune(args: dict) -> int:
    from pathlib import Path

    from cifarlab.tune import read_space, tune

    if args["trials"] < 0 or args["heartbeat"] < 1:
        raise CifarlabError("--trials must be 0 or more and --heartbeat at least 1")
    space = read_space(args["space"], args["config"])
    tune(args["preset"], args["config"], space, args["trials"], args["storage"], args["study"],
         Path(args["runs_dir"]), args["data_dir"], args["timeout"], args["sampler_seed"],
         args["heartbeat"])
    return 0


def cmd_bench(args: dict) -> int:
    from pathlib import Path

    from cifarlab.bench import bench, markdown_table

    if args["table"]:
        print(markdown_table(json.loads(Path(args["table"]).read_text())))
        return 0
    unknown = [p for p in args["presets"] if p not in PRESETS]
    if not args["presets"] or unknown:
        raise CifarlabError(f"name presets to run (unknown: {', '.join(unknown) or 'none'}); "
                            f"choose from {', '.join(PRESETS)}")
    if args["seeds"] < 1:
        raise CifarlabError("--seeds must be at least 1")
    seeds = list(range(args["seeds"]))
    if args["seed_list"]:
        try:
            seeds = [int(s) for s in args["seed_list"].split(",") if s.strip()]
        except ValueError:
            raise CifarlabError(f"--seed-list takes whole numbers separated by commas, not "
                                f"{args['seed_list']!r}") from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise CifarlabError("--seed-list needs one or more different seeds, e.g. 2,3")
    extra = args["train_args"] + (["--data-dir", args["data_dir"]] if args["data_dir"] else [])
    bench(args["presets"], seeds, Path(args["out"]),
          Path(args["runs_dir"]) if args["runs_dir"] else None, extra,
          compare_record=args["compare_record"], merge=bool(args["seed_list"]))
    return 0


def cmd_compare(args: dict) -> int:
    from cifarlab.compare import compare_runs

    print(f"wrote {compare_runs(args['runs'], args['output'], args['pictures'])}")
    return 0


def cmd_runs(args: dict) -> int:
    from cifarlab.run_table import COLUMNS, format_table, list_runs, sort_rows

    if args["sort"] not in COLUMNS:
        raise CifarlabError(f"--sort takes one of {', '.join(COLUMNS)}, not {args['sort']!r}")
    rows = sort_rows(list_runs(args["dir"], args["all"]), args["sort"])
    if args["json"]:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no runs under {args['dir']}")
    return 0


def cmd_models(args: dict) -> int:
    from cifarlab.models import describe_model, list_models, list_source_models

    if args["source"]:
        for name in list_source_models(args["source"], args["filter"]):
            print(f"{args['source']}:{name}")
        return 0
    names = [n for n in list_models() if not args["filter"] or args["filter"] in n]
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {describe_model(name)}")
    print("\nAlso any torchvision or timm classifier: --model tv:NAME or timm:NAME (list them: "
          "cifarlab models --source tv|timm [--filter PATTERN]; timm needs "
          "pip install 'cifarlab[timm]')")
    return 0


def _as_flags(name: str, value: typing.Any) -> str:
    """A setting spelt as the command-line option that sets it."""
    if isinstance(value, bool):
        return option_name(name) if value else option_name("no_" + name)
    if isinstance(value, (tuple, list)):
        value = " ".join(map(str, value))
    elif isinstance(value, dict):
        value = f"'{json.dumps(value)}'"
    return f"{option_name(name)} {value}"


def cmd_presets(args: dict) -> int:
    for name, values in PRESETS.items():
        mark = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name}{mark}: {values['description']}")
        print("    " + " ".join(_as_flags(k, v) for k, v in values.items()
                                if k != "description"))
    return 0
