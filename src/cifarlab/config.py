"""Training configuration: one dataclass, named presets, and loading from TOML/YAML/JSON files.

Precedence, lowest to highest: the dataclass defaults, the preset, the config file, explicit
overrides (command-line flags or keyword arguments of `cifarlab.train`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.presets import DEFAULT_PRESET, PRESETS

# Per-channel statistics of each training set: a run's normalisation unless --mean/--std say.
TTA_CHOICES = ("none", "flip", "flip-translate")  # test-time augmentation: views averaged

DATASET_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # pretrained weights expect


class ConfigError(CifarlabError, ValueError):
    """A configuration value, file or preset that cannot be used; the message says what to fix."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field that carries its help text (shown by `cifarlab train --help`)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # --- data
    dataset: str = _f("cifar10", "dataset; folder: your own images in --data-dir, as "
                      "train/CLASS/IMAGE (+ optional val/ and test/ alike)",
                      choices=("cifar10", "cifar100", "folder"))
    data_dir: str | None = _f(None, "folder holding cifar-10-batches-py/ (default: "
                              "$CIFARLAB_DATA_DIR, else ./data), or the image folder")
    download: bool = _f(True, "download the dataset when it is not found")
    val_size: int | None = _f(None, "images held out of the training set for validation / "
                              "early stopping (stratified; default: 5,000 for CIFAR, 10% of "
                              "an image folder without val/); 0 = none, the last epoch is kept")
    split_seed: int = _f(0, "seed of the validation split (kept apart from --seed so that runs "
                         "with different seeds share one split)")
    # --- model
    model: str = _f("resnet18", "model name: one of cifarlab's, or any torchvision or timm "
                    "classifier as tv:NAME / timm:NAME (see `cifarlab models`)")
    model_args: dict = _f({}, "extra keyword arguments for the model, as JSON")
    pretrained: bool = _f(False, "start from ImageNet weights (tv:/timm: models; fetched into "
                          "TORCH_HOME / the Hugging Face cache, or read from --weights) and "
                          "normalise with ImageNet's mean and std")
    weights: str | None = _f(None, "initial weights from a local .pth/.pt/.safetensors state "
                             "dict (all but its classifier); with --pretrained, instead of "
                             "fetching them")
    image_size: int = _f(32, "size the network sees: images are resized to it on the device "
                         "(antialiased bilinear) when stored at another size")
    # --- optimisation
    epochs: int = _f(30, "maximum number of epochs")
    batch_size: int = _f(128, "training batch size")
    micro_batch: int | None = _f(None, "run each batch's forward and backward passes in "
                                 "pieces of at most this many images, gradients summed: the "
                                 "same step in less memory, and on a CPU often faster "
                                 "(BatchNorm sees each piece)")
    optimizer: str = _f("sgd", "optimizer; muon: Muon on the conv filters (--muon-lr, "
                        "--muon-momentum), Nesterov SGD on the rest",
                        choices=("sgd", "adamw", "muon"))
    lr: float = _f(0.1, "peak learning rate")
    momentum: float = _f(0.9, "SGD momentum (AdamW: beta1)")
    nesterov: bool = _f(False, "Nesterov momentum (SGD)")
    muon_lr: float = _f(0.24, "muon: step size of the conv filters (each step is an "
                        "orthogonalised update; the filters are kept at a fixed norm)")
    muon_momentum: float = _f(0.6, "muon: Nesterov momentum of the conv filters")
    muon_ns_precision: str = _f("auto", "muon: precision of the Newton-Schulz steps: auto = "
                                "bf16 when the run computes in bf16 (as the record), else "
                                "float32", choices=("auto", "float32"))
    weight_decay: float = _f(5e-4, "weight decay")
    decay_norm_and_bias: bool = _f(True, "apply weight decay to normalisation weights and biases "
                                   "too (off: only to conv/linear weights)")
    norm_bias_lr_scale: float = _f(1.0, "learning-rate multiplier for normalisation weights and "
                                   "biases (their decay per step, lr x wd, stays the same)")
    body_lr_scale: float = _f(1.0, "learning-rate multiplier for all but the classifier: a "
                              "pretrained body learns slower than its new head (finetune: 0.1)")
    schedule: str = _f("cosine", "learning-rate schedule, stepped every batch",
                       choices=("constant", "cosine", "onecycle", "step"))
    t_max: float | None = _f(None, "cosine: period in epochs (default: --epochs); past it the "
                             "rate rises again, as torch's CosineAnnealingLR does")
    warmup: float = _f(0.0, "linear warm-up from 0 over this share of the run, in [0, 1) "
                       "(onecycle: the rising part)")
    step_size: int = _f(30, "step: multiply the rate by --gamma every this many epochs")
    gamma: float = _f(0.1, "step: decay factor")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy loss")
    mixup_alpha: float = _f(0.0, "mixup Beta(alpha, alpha); 0 = off")
    ema_decay: float | None = _f(None, "keep an exponential moving average of the weights with "
                                 "this decay per step and evaluate it (e.g. 0.999)")
    whiten_bias_share: float = _f(1.0, "fastnet: train the whitening layer's bias only in this "
                                  "first share of the run, in (0, 1] (airbench: 3 of 10 epochs)")
    patience: int | None = _f(None, "early stopping: stop after this many epochs without a "
                              "better validation accuracy")
    low_res_epochs: int = _f(0, "train the first this many epochs on images scaled down to "
                             "--low-res-size pixels (antialiased): fewer pixels, less compute; "
                             "for networks that take any size, such as fastnet (the last "
                             "epoch always sees full-size images)")
    low_res_size: tuple[int, ...] = _f((24,), "image size of the first --low-res-epochs epochs: "
                                       "one for all, or one per epoch (a ramp: 24 24 28)")
    # --- augmentation (batched, on the training device)
    crop_padding: int = _f(4, "random crop after zero padding of this many pixels; 0 = off")
    flip: bool = _f(True, "random horizontal flip")
    alternate_flip: bool = _f(False, "flip: a random half of the images in the first epoch, then "
                              "each image the other way than in the epoch before")
    crop_mode: str = _f("zeros", "crop: fill of the padding", choices=("zeros", "reflect"))
    rotation: float = _f(0.0, "random rotation of up to this many degrees; 0 = off")
    color_jitter: tuple[float, float, float, float] = _f(
        (0.0, 0.0, 0.0, 0.0), "brightness, contrast, saturation, hue jitter")
    cutout: int = _f(0, "cutout square side in pixels; 0 = off")
    mean: tuple[float, float, float] | None = _f(None, "per-channel normalisation mean "
                                                 "(default: the dataset's own)")
    std: tuple[float, float, float] | None = _f(None, "per-channel normalisation std "
                                                "(default: the dataset's own)")
    # --- runtime
    device: str = _f("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    amp: str = _f("auto", "mixed precision: auto = bf16 on CUDA (fp16 without bf16) and on CPUs "
                  "with native bf16 (AMX, AVX512-BF16), else off", choices=("auto", "bf16",
                                                                           "fp16", "off"))
    channels_last: bool | None = _f(None, "channels-last memory format (default: on, except "
                                    "on MPS)")
    num_threads: int | None = _f(None, "CPU threads for torch (default: torch's choice)")
    eval_batch_size: int | None = _f(None, "batch size for validation and test evaluation "
                                     "(default: 250 on the CPU, 4-37 percent faster than "
                                     "1,000 on 2 cores; 1,000 elsewhere)")
    tta: str = _f("none", "test-time augmentation for validation and test: average the logits "
                  "of mirrored (flip) and also 1-pixel shifted views (flip-translate)",
                  choices=TTA_CHOICES)
    tta_share: float = _f(1.0, "share of each test batch that gets the test-time views: the "
                          "images one view is least sure of (1 = all)")
    sync_bn: bool = _f(False, "with torchrun: BatchNorm statistics over the global batch, not "
                       "each process's share")
    compile: bool = _f(False, "torch.compile the model (pays off in long runs)")
    seed: int = _f(0, "random seed (weights, data order, augmentation)")
    run_dir: str | None = _f(None, "run folder (default: runs/<timestamp>-<preset>)")
    report: bool = _f(True, "write report.html and its pictures into the run folder at the end")
    tensorboard: bool = _f(False, "write TensorBoard event files to RUN_DIR/tensorboard "
                           "(pip install 'cifarlab[tensorboard]')")
    log_every: int = _f(50, "--tensorboard: log the loss and learning rate every this many "
                        "steps")
    preset: str = _f("fast", "named preset the run started from (see `cifarlab presets`)")

    def validate(self) -> Config:
        """Reject impossible values before any work starts; returns self."""
        from cifarlab.models import check_model

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, "
                                  f"not {getattr(self, f.name)!r}")
        try:
            check_model(self.model)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of "
                              f"{', '.join(PRESETS)}")
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.micro_batch is None or self.micro_batch >= 2,
             "micro_batch must be at least 2 (BatchNorm needs two images)"),
            (self.eval_batch_size is None or self.eval_batch_size >= 1,
             "eval_batch_size must be at least 1"),
            (self.log_every >= 1, "log_every must be at least 1"),
            (self.lr > 0, "lr must be greater than 0"),
            (self.weight_decay >= 0, "weight_decay must be 0 or more"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.muon_lr > 0, "muon_lr must be greater than 0"),
            (0 <= self.muon_momentum < 1, "muon_momentum must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.mixup_alpha >= 0, "mixup_alpha must be 0 or more"),
            (self.val_size is None or self.val_size >= 0, "val_size must be 0 or more"),
            (0 <= self.warmup < 1, "warmup is a share of the run: it must be in [0, 1)"),
            (0 < self.whiten_bias_share <= 1, "whiten_bias_share must be in (0, 1]"),
            (0 <= self.tta_share <= 1, "tta_share must be in [0, 1]"),
            (self.t_max is None or self.t_max > 0, "t_max must be greater than 0"),
            (self.step_size >= 1, "step_size must be at least 1"),
            (self.patience is None or self.patience >= 1, "patience must be at least 1"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay must be in (0, 1)"),
            (0 <= self.low_res_epochs <= self.epochs, "low_res_epochs must be in [0, epochs]"),
            (8 <= self.image_size <= 1024, "image_size must be in [8, 1024] pixels"),
            (self.low_res_epochs == 0 or all(8 <= s <= self.image_size
                                             for s in self.low_res_size),
             "low_res_size must be in [8, image_size] pixels; lower it, or set "
             "--low-res-epochs 0"),
            (self.low_res_epochs == 0 or len(self.low_res_size) in (1, self.low_res_epochs),
             "low_res_size needs one size, or one per low-res epoch "
             f"({self.low_res_epochs}), not {len(self.low_res_size)}"),
            (0 <= self.crop_padding <= 16, "crop_padding must be in [0, 16]"),
            (0 <= self.rotation <= 180, "rotation must be in [0, 180] degrees"),
            (0 <= self.cutout <= 32, "cutout must be in [0, 32] pixels"),
            (all(v >= 0 for v in self.color_jitter) and self.color_jitter[3] <= 0.5,
             "color_jitter values must be >= 0, and hue <= 0.5"),
            (self.std is None or all(s > 0 for s in self.std),
             "std values must be greater than 0"),
            (self.num_threads is None or self.num_threads >= 1, "num_threads must be >= 1"),
            (self.norm_bias_lr_scale > 0, "norm_bias_lr_scale must be greater than 0"),
            (0 < self.body_lr_scale <= 1, "body_lr_scale must be in (0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A saved run's settings as they were (no preset layered on top), older files
        upgraded; validated."""
        return cls(**_apply(_defaults(), upgrade_config(values), "saved settings")).validate()

    def epoch_size(self, epoch: int) -> int:
        """Image size of training epoch `epoch` (from 1): the low-res sizes first, the last
        epoch always at --image-size, as the test is."""
        if epoch > min(self.low_res_epochs, self.epochs - 1):
            return self.image_size
        return self.low_res_size[min(epoch, len(self.low_res_size)) - 1]

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std): the ones set, else ImageNet's for pretrained weights, else the
        dataset's own."""
        own = DATASET_STATS.get(self.dataset, ((0.5,) * 3, (0.5,) * 3))  # folders: set on load
        mean, std = IMAGENET_STATS if self.pretrained else own
        return tuple(self.mean or mean), tuple(self.std or std)



def field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a value read from a file or the command line to the field's declared type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        return _coerce(name, value, hint)
    try:
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if args[-1] is Ellipsis:  # any number of one type; a lone value is one of them
                value = list(value) if isinstance(value, (list, tuple)) else [value]
                args = (args[0],) * len(value)
            if len(value) != len(args):
                raise ConfigError(f"{name} needs {len(args)} values, got {len(value)}")
            return tuple(_coerce(name, v, a) for a, v in zip(args, value, strict=True))
        if hint is dict or origin is dict:
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a mapping")
            return dict(value)
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ConfigError(f"{name} must be true or false, not {value!r}")
                return value.lower() in ("true", "yes", "1", "on")
            return bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name} must be a whole number, not {value}")
        return hint(value)
    except (TypeError, ValueError, json.JSONDecodeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{name}: cannot read {value!r} as {getattr(hint, '__name__', hint)}"
                          ) from None


def _apply(base: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    hints = field_types()
    unknown = sorted(set(overrides) - set(hints))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in {source}; valid: "
                          f"{', '.join(hints)}")
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _coerce(key, value, hints[key])
    return out


def preset_overrides(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return {k: v for k, v in PRESETS[name].items() if k != "description"}


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Settings from a .toml, .yaml/.yml or .json file (same names as the Config fields)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {p} must end in .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as e:  # parser errors of three libraries; all mean "fix the file"
        raise ConfigError(f"config file {p} is not valid {p.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of settings")
    return data


def _defaults() -> dict[str, Any]:
    return {f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config)}


_NETWORK_CHOICES = {"low_res_epochs": 0, "norm_bias_lr_scale": 1.0}


def _layer(values: dict[str, Any], layer: dict[str, Any], source: str) -> dict[str, Any]:
    """Apply one layer of settings. model_args merge into the model's arguments so far (a key
    set to null removes it); naming another model starts its arguments afresh, at full
    resolution, its norm and bias rates at the lr."""
    layer = dict(layer)
    args = layer.pop("model_args", None)
    out = _apply(values, layer, source)
    if out["model"] != values["model"]:  # a preset's choices for its own network reset:
        out["model_args"] = {}            # other networks may not take other image sizes,
        for key, value in _NETWORK_CHOICES.items():  # nor BatchNorm rates 64x the lr
            if key not in layer:
                out[key] = value
    if args is not None:
        merged = {**out["model_args"], **_coerce("model_args", args, dict)}
        out["model_args"] = {k: v for k, v in merged.items() if v is not None}
    return out


def make_config(preset: str | None = None, config_file: str | os.PathLike | None = None,
                **overrides: Any) -> Config:
    """Resolve defaults <- preset <- config file <- overrides into a validated Config."""
    file_values = read_config_file(config_file) if config_file else {}
    file_values.pop("tune", None)  # a search space for `cifarlab tune`, not a setting
    name = overrides.get("preset") or preset or file_values.get("preset") or DEFAULT_PRESET
    values = _layer(_defaults(), preset_overrides(name), f"preset {name}")
    values = _layer(values, file_values, str(config_file))
    values = _layer(values, overrides, "arguments")
    values["preset"] = name
    return Config(**values).validate()


def upgrade_config(values: dict[str, Any]) -> dict[str, Any]:
    """Settings saved by an older cifarlab, in today's terms, meaning what they meant then:
    warm-up in epochs becomes a share of the run; fastnet keeps torch's BatchNorm eps and a
    whitening bias trained all run long; Muon keeps float32 Newton-Schulz."""
    values = dict(values)
    values.setdefault("muon_ns_precision", "float32")  # Newton-Schulz was float32 before it
    if "warmup_epochs" in values:
        epochs = max(int(values.get("epochs", 1)), 1)
        values["warmup"] = min(float(values.pop("warmup_epochs")) / epochs, 0.999)
        values.setdefault("whiten_bias_share", 1.0)
        if values.get("model") == "fastnet":
            values["model_args"] = {"bn_eps": 1e-5, **values.get("model_args", {})}
    return values


def option_name(field: str) -> str:
    """The command-line option of a Config field: num_threads -> --num-threads."""
    return "--" + field.replace("_", "-")
