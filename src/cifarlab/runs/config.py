"""A run's settings: one frozen dataclass, `Config`, made by `make_config` (runs/resolve.py) from
the base values, a named preset, a config file and explicit overrides (lowest to highest), or
read back from a run (`Config.from_dict`, which upgrades settings saved by older versions). A
training run resolves the data folder and the normalisation once (`Config.resolved`); after
that nothing changes a Config.

Every setting is declared once, below, with its base value (what a preset does not set) and
the help text `cifarlab train --help` shows. There is no bare `Config()`: a Config always says
which preset it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from cifarlab.data import DATASET_CHOICES, DATASETS, Stats, default_data_dir
from cifarlab.data.cifar import VAL_SIZE
from cifarlab.data.folders import VAL_SHARE
from cifarlab.errors import ConfigError
from cifarlab.models import IMAGENET_STATS, TTA_CHOICES, check_model
from cifarlab.models.external import pretrained_stats
from cifarlab.runs.presets import DEFAULT_PRESET, PRESETS
from cifarlab.runs.values import coerce
from cifarlab.runtime import CPU_EVAL_BATCH, EVAL_BATCH

# The settings' sections, by their first field (the `# ---` lines of Config): --help's groups.
SECTIONS = {"dataset": "data", "model": "model", "epochs": "optimisation",
            "crop_padding": "augmentation (batched, on the training device)",
            "device": "runtime"}


def setting(base: Any, help: str, **kw: Any) -> Any:
    """A Config field: its base value and help text (and `choices`) as metadata."""
    return field(metadata={"base": base, "help": help, **kw})


@dataclass(frozen=True, kw_only=True)
class Config:
    # --- data
    dataset: str = setting("cifar10", "dataset; folder: your own images in --data-dir, as "
                           "train/CLASS/IMAGE (+ optional val/ and test/ alike)",
                           choices=DATASET_CHOICES)
    data_dir: str | None = setting(None, "folder holding cifar-10-batches-py/ (default: "
                                   "$CIFARLAB_DATA_DIR, else ./data), or the image folder")
    download: bool = setting(True, "download the dataset when it is not found")
    val_size: int | None = setting(None, "images held out of the training set for validation "
                                   f"and early stopping (stratified; default: {VAL_SIZE:,} for "
                                   f"CIFAR, {VAL_SHARE:.0%} of an image folder without val/); "
                                   "0 = none, the last epoch is kept")
    exclude: str | None = setting(None, "leave these training images out: an audit's JSON "
                                  "(cifarlab audit) or a file of training image indices or "
                                  "image files, one per line")
    split_seed: int = setting(0, "seed of the validation split (kept apart from --seed so that "
                              "runs with different seeds share one split)")
    # --- model
    model: str = setting("resnet18", "model name: one of cifarlab's, or any torchvision or timm "
                         "classifier as tv:NAME / timm:NAME (see `cifarlab models`)")
    model_args: dict = setting({}, "extra keyword arguments for the model, as JSON")
    pretrained: bool = setting(False, "start from ImageNet weights (tv:/timm: models; fetched "
                               "into TORCH_HOME / the Hugging Face cache, or read from "
                               "--weights) and normalise with ImageNet's mean and std")
    weights: str | None = setting(None, "initial weights from a local .pth/.pt/.safetensors "
                                  "state dict (all but its classifier); with --pretrained, "
                                  "instead of fetching them")
    image_size: int = setting(32, "size the network sees: images are resized to it on the "
                              "device (antialiased bilinear) when stored at another size")
    # --- optimisation
    epochs: int = setting(30, "maximum number of epochs")
    batch_size: int = setting(128, "training batch size (the global batch under torchrun)")
    micro_batch: int | None = setting(None, "run each batch's forward and backward passes in "
                                      "pieces of at most this many images, gradients summed: "
                                      "the same step in less memory (BatchNorm sees each "
                                      "piece)")
    cpu_micro_batch: int | None = setting(None, "on the CPU only, as --micro-batch: what "
                                          "presets set to bound the CPU's memory (a GPU "
                                          "steps the whole batch at once)")
    optimizer: str = setting("sgd", "optimizer; muon: Muon on the conv filters (--muon-lr, "
                             "--muon-momentum), Nesterov SGD on the rest",
                             choices=("sgd", "adamw", "muon"))
    lr: float = setting(0.1, "peak learning rate")
    momentum: float = setting(0.9, "SGD momentum (AdamW: beta1)")
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    muon_lr: float = setting(0.24, "muon: step size of the conv filters (each step is an "
                             "orthogonalised update; the filters are kept at a fixed norm)")
    muon_momentum: float = setting(0.6, "muon: Nesterov momentum of the conv filters")
    muon_ns_precision: str = setting("auto", "muon: precision of the Newton-Schulz steps: auto "
                                     "= bf16 when the run computes in bf16 (as the record), "
                                     "else float32", choices=("auto", "float32"))
    weight_decay: float = setting(5e-4, "weight decay")
    decay_norm_and_bias: bool = setting(True, "apply weight decay to normalisation weights and "
                                        "biases too (off: only to conv/linear weights)")
    norm_bias_lr_scale: float = setting(1.0, "learning-rate multiplier for normalisation "
                                        "weights and biases (their decay per step, lr x wd, "
                                        "stays the same)")
    body_lr_scale: float = setting(1.0, "learning-rate multiplier for all but the classifier: "
                                   "a pretrained body learns slower than its new head")
    schedule: str = setting("cosine", "learning-rate schedule, stepped every batch",
                            choices=("constant", "cosine", "onecycle", "step"))
    t_max: float | None = setting(None, "cosine: period in epochs (default: --epochs); past it "
                                  "the rate rises again, as torch's CosineAnnealingLR does")
    warmup: float = setting(0.0, "linear warm-up from 0 over this share of the run, in [0, 1) "
                            "(onecycle: the rising part)")
    step_size: int = setting(30, "step: multiply the rate by --gamma every this many epochs")
    gamma: float = setting(0.1, "step: decay factor")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy loss")
    mixup_alpha: float = setting(0.0, "mixup Beta(alpha, alpha); 0 = off")
    ema_decay: float | None = setting(None, "keep an exponential moving average of the weights "
                                      "with this decay per step and evaluate it (e.g. 0.999)")
    whiten_bias_share: float = setting(1.0, "fastnet: train the whitening layer's bias only in "
                                       "this first share of the run, in (0, 1] (airbench: 3 of "
                                       "10 epochs)")
    patience: int | None = setting(None, "early stopping: stop after this many epochs without "
                                   "a better validation accuracy")
    low_res_epochs: int = setting(0, "train the first this many epochs on images scaled down "
                                  "to --low-res-size pixels (antialiased): fewer pixels, less "
                                  "compute; for networks that take any size, such as fastnet "
                                  "(the last epoch always sees full-size images)")
    low_res_size: tuple[int, ...] = setting((24,), "image size of the first --low-res-epochs "
                                            "epochs: one for all, or one per epoch (a ramp: "
                                            "24 24 28)")
    # --- augmentation (batched, on the training device)
    crop_padding: int = setting(4, "random crop after padding of this many pixels; 0 = off")
    flip: bool = setting(True, "random horizontal flip")
    alternate_flip: bool = setting(False, "flip: a random half of the images in the first "
                                   "epoch, then each image the other way than the epoch "
                                   "before")
    crop_mode: str = setting("zeros", "crop: fill of the padding", choices=("zeros", "reflect"))
    rotation: float = setting(0.0, "random rotation of up to this many degrees; 0 = off")
    color_jitter: tuple[float, float, float, float] = setting(
        (0.0, 0.0, 0.0, 0.0), "brightness, contrast, saturation, hue jitter")
    cutout: int = setting(0, "cutout square side in pixels; 0 = off")
    mean: tuple[float, float, float] | None = setting(None, "per-channel normalisation mean "
                                                      "(default: the dataset's own)")
    std: tuple[float, float, float] | None = setting(None, "per-channel normalisation std "
                                                     "(default: the dataset's own)")
    # --- runtime
    device: str = setting("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    amp: str = setting("auto", "mixed precision: auto = bf16 on CUDA (fp16 without bf16) and "
                       "on CPUs with native bf16 (AMX, AVX512-BF16), else off",
                       choices=("auto", "bf16", "fp16", "off"))
    channels_last: bool | None = setting(None, "channels-last memory format (default: on, "
                                         "except on MPS)")
    num_threads: int | None = setting(None, "CPU threads for torch (default: torch's choice)")
    eval_batch_size: int | None = setting(None, "batch size for validation and test "
                                          f"evaluation (default: {CPU_EVAL_BATCH:,} on the "
                                          f"CPU, {EVAL_BATCH:,} elsewhere)")
    tta: str = setting("none", "test-time augmentation of the test: average the logits of "
                       "mirrored (flip) and also 1-pixel shifted views (flip-translate); "
                       "validation always sees one view", choices=TTA_CHOICES)
    tta_share: float = setting(1.0, "share of each test batch that gets the test-time views: "
                               "the images one view is least sure of (1 = all)")
    temperature: float | None = setting(None, "divide the test logits by this temperature, "
                                        "so that the probabilities are calibrated (1 = "
                                        "none); default: the preset's, where the run is "
                                        "one it was fitted for; a run with a validation "
                                        "split fits its own at the end")
    sync_bn: bool = setting(False, "with torchrun: BatchNorm statistics over the global batch, "
                            "not each process's share")
    compile: bool = setting(False, "torch.compile the training model (on the CPU it needs a "
                            "C++ compiler; without one the run trains without it and says so)")
    seed: int = setting(0, "random seed (weights, data order, augmentation)")
    run_dir: str | None = setting(None, "run folder (default: runs/<timestamp>-<preset>)")
    report: bool = setting(True, "write report.html and its pictures into the run folder at "
                           "the end")
    tensorboard: bool = setting(False, "write TensorBoard event files to RUN_DIR/tensorboard "
                                "(pip install 'cifarlab[tensorboard]')")
    log_every: int = setting(50, "--tensorboard: log the loss and learning rate every this "
                             "many steps")
    preset: str = setting(DEFAULT_PRESET, "named preset the run started from (see `cifarlab "
                          "presets`)")

    def validate(self) -> Config:
        """Reject impossible values before any work starts; returns self."""
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
        for name, value in dataclasses.asdict(self).items():
            numbers = value if isinstance(value, (tuple, list)) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                raise ConfigError(f"{name} must be a finite number, not {value!r}")
        for ok, message in self._checks():
            if not ok:
                raise ConfigError(message)
        return self

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.epochs >= 1, "epochs must be at least 1"),
            (0 <= self.seed < 2**32, "seed must be in [0, 2**32 - 1]"),
            (0 <= self.split_seed < 2**32, "split_seed must be in [0, 2**32 - 1]"),
            (0 < self.gamma <= 1, "gamma (the step schedule's factor) must be in (0, 1]"),
            (self.mean is None or len(self.mean) == 3, "mean needs 3 values, one per channel"),
            (self.std is None or len(self.std) == 3, "std needs 3 values, one per channel"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (all(m is None or m >= 2 for m in (self.micro_batch, self.cpu_micro_batch)),
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
            (self.temperature is None or self.temperature > 0, "temperature must be > 0"),
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A saved run's settings as they were (no preset layered on top), older files
        upgraded; validated."""
        return cls(**apply_values(base_values(), upgrade_config(values),
                                  "saved settings")).validate()

    def resolved(self, data_dir: str | os.PathLike | None, stats: Stats) -> Config:
        """These settings with the data folder and the normalisation made explicit: the
        folder read, the exclusion list's absolute path, the mean and std set (else, for
        pretrained weights, those the weights' own configuration gives, else `stats`, the
        dataset's own). What a run writes to config.json and trains with."""
        mean, std = pretrained_stats(self.model) if self.pretrained else stats
        return dataclasses.replace(
            self, data_dir=None if data_dir is None else str(data_dir),
            exclude=self.exclude and os.path.abspath(self.exclude),
            mean=tuple(self.mean or mean), std=tuple(self.std or std)).validate()

    def data_folder(self) -> str | None:
        """The data folder this run reads: its own, else (CIFAR) the default one."""
        if self.data_dir is not None or self.dataset == "folder":
            return self.data_dir
        return str(default_data_dir())

    def pieces_of(self, device_type: str) -> int | None:
        """The most images one forward and backward pass takes on this kind of device (None:
        the whole batch)."""
        return self.micro_batch or (self.cpu_micro_batch if device_type == "cpu" else None)

    def epoch_size(self, epoch: int) -> int:
        """Image size of training epoch `epoch` (from 1): the low-res sizes first, the last
        epoch always at --image-size, as the test is."""
        if epoch > min(self.low_res_epochs, self.epochs - 1):
            return self.image_size
        return self.low_res_size[min(epoch, len(self.low_res_size)) - 1]


def field_types() -> dict[str, Any]:
    """Each setting's declared type."""
    return typing.get_type_hints(Config)


def apply_values(base: dict[str, Any], overrides: dict[str, Any], source: str
                 ) -> dict[str, Any]:
    """`base` with `overrides` (settings by name, from `source`) converted to their types."""
    hints = field_types()
    unknown = sorted(set(overrides) - set(hints))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in {source}; valid: "
                          f"{', '.join(hints)}")
    return {**base, **{key: coerce(key, value, hints[key]) for key, value in overrides.items()}}


def setting_sections() -> list[tuple[str, list[str]]]:
    """(section, its settings' names) in Config's order."""
    groups: list[tuple[str, list[str]]] = []
    for f in dataclasses.fields(Config):
        if f.name in SECTIONS:
            groups.append((SECTIONS[f.name], []))
        groups[-1][1].append(f.name)
    return groups


def base_values() -> dict[str, Any]:
    """Each setting's base value: what applies where no preset, file or option sets it."""
    values = {}
    for f in dataclasses.fields(Config):
        base = f.metadata["base"]
        values[f.name] = type(base)(base) if isinstance(base, (dict, list)) else base
    return values


def upgrade_config(values: dict[str, Any]) -> dict[str, Any]:
    """Settings saved by an older cifarlab, in today's terms, meaning what they meant then:
    warm-up in epochs becomes a share of the run; fastnet keeps torch's BatchNorm eps and a
    whitening bias trained all run long; Muon keeps float32 Newton-Schulz; an unset mean and
    std (CIFAR's own, or ImageNet's for pretrained weights) become the numbers."""
    values = dict(values)
    values.setdefault("muon_ns_precision", "float32")  # Newton-Schulz was float32 before it
    if "warmup_epochs" in values:
        epochs = max(int(values.get("epochs", 1)), 1)
        values["warmup"] = min(float(values.pop("warmup_epochs")) / epochs, 0.999)
        values.setdefault("whiten_bias_share", 1.0)
        if values.get("model") == "fastnet":
            values["model_args"] = {"bn_eps": 1e-5, **values.get("model_args", {})}
    dataset = values.get("dataset", base_values()["dataset"])
    if values.get("mean") is None and (values.get("pretrained") or dataset in DATASETS):
        stats = IMAGENET_STATS if values.get("pretrained") else DATASETS[dataset].stats
        values["mean"] = stats[0]
        values["std"] = values.get("std") or stats[1]
    return values
