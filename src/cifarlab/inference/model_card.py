"""A model package's README.md, in the Hugging Face model card layout: YAML front matter
(library, tags, datasets, metrics and a model-index with the test figures), then the results
and per-class table from the run's metrics.json, how to use it, the recipe, how to train it
again, the machine and time it took, the intended use and the limitations."""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from cifarlab.metrics import TEMPERATURE_FROM
from cifarlab.runs import Config, make_config
from cifarlab.runs.values import as_argv

# settings that say where and how a run ran, or that it resolved, not what it trained
NOT_RECIPE = {"preset", "seed", "data_dir", "run_dir", "exclude", "mean", "std", "device",
              "num_threads", "report", "log_every", "download"}
HUB_DATASETS = {"cifar10": ("uoft-cs/cifar10", "CIFAR-10"),
                "cifar100": ("uoft-cs/cifar100", "CIFAR-100")}
RECIPE = ("model", "model_args", "pretrained", "image_size", "epochs", "batch_size", "optimizer",
          "lr", "muon_lr", "momentum", "weight_decay", "schedule", "warmup", "label_smoothing",
          "mixup_alpha", "ema_decay", "crop_padding", "flip", "rotation", "color_jitter", "cutout",
          "val_size", "tta", "amp", "seed")


def front_matter(cfg: Config, library: str, metrics: dict[str, Any] | None) -> str:
    hub_id, title = HUB_DATASETS.get(cfg.dataset, (None, "an image folder"))
    meta: dict[str, Any] = {
        "library_name": library, "pipeline_tag": "image-classification",
        "tags": ["image-classification", "cifarlab", cfg.dataset, cfg.model.split(":")[-1]],
        "metrics": ["accuracy", "f1"]}
    if hub_id:
        meta["datasets"] = [hub_id]
    split = (metrics or {}).get("evaluated_on")
    if split:
        meta["model-index"] = [{"name": f"cifarlab-{cfg.preset}-{cfg.model.split(':')[-1]}",
                                "results": [{
            "task": {"type": "image-classification"},
            "dataset": {"name": title, "type": hub_id or "imagefolder", "split": split},
            "metrics": [{"type": "accuracy", "value": round(metrics[f"{split}_top1"], 2)},
                        *([{"type": "f1", "name": "macro-F1",
                            "value": round(metrics[f"{split}_macro_f1"], 2)}]
                          if metrics.get(f"{split}_macro_f1") is not None else [])]}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def results_section(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics or not metrics.get("evaluated_on"):
        return ["## Results", "", "Not evaluated on a test set (a search trial)."]
    split = metrics["evaluated_on"]
    f = {k: metrics.get(f"{split}_{k}") for k in ("top1", "top5", "macro_f1", "ece", "nll",
                                                  "brier")}
    cell = lambda v, unit="": "n/a" if v is None else f"{v:.2f}{unit}"  # noqa: E731
    what = ("the test set, used once, on weights chosen without it" if split == "test" else
            "the validation split (the image folder has no test/; the same split chose the "
            "weights, so these figures are optimistic)")
    lines = ["## Results", "", f"On {what}; {len(metrics.get('confusion') or [])} classes.", "",
             "| top-1 | top-5 | macro-F1 | ECE (15 bins) | NLL | Brier |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| {cell(f['top1'], '%')} | {cell(f['top5'], '%')} | {cell(f['macro_f1'], '%')} | "
             f"{cell(f['ece'], '%')} | {f['nll'] or float('nan'):.4f} | "
             f"{f['brier'] or float('nan'):.4f} |", ""]
    c = metrics.get("calibration") or {}
    if c.get("temperature"):
        b = c["before"]
        lines += [f"The probabilities are the logits divided by the temperature "
                  f"{c['temperature']:.4f} ({TEMPERATURE_FROM[c['from']]}); without it: ECE "
                  f"{b['ece']:.2f}%, NLL {b['nll']:.4f}, Brier {b['brier']:.4f} (top-1 is the "
                  "same).", ""]
    scores = metrics.get("class_scores") or {}
    lines += ["| class | accuracy (recall) | precision | F1 | images |",
              "| --- | --- | --- | --- | --- |"]
    for c, acc in metrics.get("per_class", {}).items():
        s = scores.get(c, {})
        lines.append(f"| {c} | {cell(acc, '%')} | {cell(s.get('precision'), '%')} | "
                     f"{cell(s.get('f1'), '%')} | {s.get('support', '')} |")
    return lines


def usage_section(cfg: Config, own: dict[str, Any], library: str) -> list[str]:
    size = own["image_size"]
    mean = own["mean"]
    std = own["std"]
    lines = ["## How to use", "", "With cifarlab (`pip install cifarlab`), from this folder or "
             "from the hub:", "", "```python", "import cifarlab", "",
             'model = cifarlab.load_model("PATH_OR_hf-hub:ORG/NAME")  # float RGB in [0, 1]',
             "probs = model(images).softmax(1)  # images: (N, 3, H, W), resized inside", "```",
             "", "```bash", "cifarlab predict PATH_OR_hf-hub:ORG/NAME photo.jpg", "```", ""]
    arch = cfg.model.split(":", 1)[-1]
    if library == "timm":
        lines += ["In plain timm (the weights and config follow timm's hub layout):", "",
                  "```python", "import timm", "",
                  'model = timm.create_model("local-dir:PATH", pretrained=True)  # or '
                  '"hf-hub:ORG/NAME"', "```", ""]
    elif cfg.model.startswith("tv:"):
        lines += ["In plain torchvision:", "", "```python", "import torchvision",
                  "from safetensors.torch import load_file", "",
                  f'model = torchvision.models.get_model("{arch}", num_classes='
                  f'{own["num_classes"]})', 'model.load_state_dict(load_file("model.safetensors"))',
                  "```", ""]
    lines += [f"Input: RGB scaled to [0, 1], {size}x{size} pixels, normalised with mean "
              f"{[round(m, 4) for m in mean]} and std {[round(s, 4) for s in std]} (cifarlab "
              "does this inside the model). Output: logits for the classes in `label_names`"
              + (f", divided by the temperature {own['temperature']:.4f} "
                 f"({own.get('temperature_from') or 'fitted on the validation split'})"
                 if own.get("temperature") else "") + "."]
    if own.get("weights_dtype") == "bfloat16":
        lines += ["", "The conv and linear weights are stored in bfloat16 (half the size); "
                  "they compute in float32."]
    return lines


def train_command(cfg: Config) -> str:
    """The `cifarlab train` command of these settings: the preset, the seed, and the settings
    that differ from the preset's (less where and how it ran)."""
    preset = make_config(cfg.preset).to_dict()
    diff = {k: v for k, v in cfg.to_dict().items() if k not in NOT_RECIPE and v != preset[k]}
    return shlex.join(["cifarlab", "train", "--preset", cfg.preset, "--seed", str(cfg.seed),
                       *as_argv(diff)]) + " --data-dir PATH"


def model_card(cfg: Config, own: dict[str, Any], library: str,
               metrics: dict[str, Any] | None) -> str:
    """The README.md of a package made from a run with settings `cfg`; `own` is config.json's
    cifarlab section, `metrics` the run's metrics.json."""
    m = metrics or {}
    recipe = [f"| `{k}` | `{getattr(cfg, k)!r}` |" for k in RECIPE]
    took = (f"{m['train_seconds'] / 60:.1f} min of training ({m.get('epochs')} epochs) on "
            f"{m.get('device_name') or m.get('device')} in {m.get('precision')} (its test "
            f"figures too), torch {m.get('torch_version')}, "
            f"cifarlab {m.get('cifarlab_version')}" if "train_seconds" in m else "not recorded")
    worst = min(((c, a) for c, a in m.get("per_class", {}).items() if a is not None),
                key=lambda t: t[1], default=None)
    lines = [front_matter(cfg, library, metrics),
             f"# {cfg.model} on {cfg.dataset}, trained with cifarlab", "",
             f"A {cfg.model} image classifier for the {len(own['classes'])} classes of "
             f"{cfg.dataset} ({', '.join(own['classes'][:10])}"
             f"{', ...' if len(own['classes']) > 10 else ''}), trained with the cifarlab preset "
             f"`{cfg.preset}`, seed {cfg.seed}.", "", *results_section(metrics), "",
             *usage_section(cfg, own, library), "", "## Training", "",
             f"Time and machine: {took}.", "", "Trained with:", "", "```bash",
             train_command(cfg), "```", "",
             "or with the run's settings as config.json holds them:", "", "```bash",
             "cifarlab train --config config.json --data-dir PATH", "```", "",
             "| setting | value |", "| --- | --- |", *recipe, "",
             "## Intended use and limitations", "",
             f"- Made for {own['image_size']}x{own['image_size']} photos of these classes, for "
             "teaching and as a baseline. Larger images are shrunk to that size, which loses "
             "detail.",
             "- It knows only these classes: any other image is still given one of them, often "
             "with high confidence.",
             "- The figures hold for images like the test set's; photos from other cameras, "
             "crops or styles score lower.",
             *([f"- The weakest class is {worst[0]} ({worst[1]:.2f}%)."] if worst else []),
             "- Not for decisions about people, safety or security."]
    return "\n".join(lines) + "\n"
