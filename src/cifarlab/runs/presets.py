"""Named presets: each is a plain set of overrides of the settings' base values, in two parts:
its recipe, and its network (the model, its arguments, and the settings that only suit that
network). Naming another model keeps the recipe and leaves the network part out.

How each preset was chosen, and what it measures, is in docs/benchmarks.md; the derivations of
the numbers are here, as data: each layer says why (`cifarlab presets NAME --explain` prints
them, resolved, top to bottom).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Part:
    """One layer of a preset: the values it sets, and why they are what they are."""

    why: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Preset:
    description: str
    parts: tuple[Part, ...]  # the recipe's layers in the order they apply
    network: Part  # "model" and what goes with that network
    # The logits' divisor that calibrates its runs' probabilities (None: not measured): the
    # mean of the temperatures fitted on the validation splits of its development runs,
    # benchmarks/preset-temperatures.json (`python benchmarks/preset_temperatures.py`).
    temperature: float | None = None

    @property
    def recipe(self) -> dict[str, Any]:
        """The recipe's values, its layers merged in order (later ones win)."""
        merged: dict[str, Any] = {}
        for part in self.parts:
            merged.update(part.values)
        return merged


def _preset(description: str, *parts: Part, network: Part, temperature: float | None = None,
            why: str = "this preset's own", **values: Any) -> Preset:
    """A preset: the recipe's layers in order, then its own values (`why` they are so)."""
    own = (Part(why, values),) if values else ()
    return Preset(description, (*parts, *own), network, temperature)


def _fastnet(widths: list[int], low_res_epochs: int, whiten_bias_share: float) -> Part:
    return Part(
        f"fastnet {'/'.join(map(str, widths))} as the speed presets train it: BatchNorm with "
        "airbench's momentum (0.6 in its convention, 0.4 in torch's) and its biases at 64x "
        "the head's rate (the record's 0.053 x 2,000 against its head's 1.656, see the Muon "
        f"layer); the first {low_res_epochs} epoch(s) on 24-pixel images, which this network "
        f"takes; the whitening bias trained only in the first {whiten_bias_share:.3g} of the "
        "run",
        dict(model="fastnet", model_args={"widths": widths, "bn_momentum": 0.4},
             norm_bias_lr_scale=64.0, low_res_epochs=low_res_epochs, low_res_size=24,
             whiten_bias_share=whiten_bias_share))


_SPEED_RECIPE = Part(
    "the speed-record recipe shared by the speed presets: airbench's, with its learning rate "
    "and weight decay per 1024-example summed loss converted to torch's mean-loss SGD; "
    "alternating flips and reflect-padded 2-pixel crops; label smoothing 0.2; the mirrored and "
    "shifted test views",
    dict(batch_size=512, optimizer="sgd", lr=0.75, momentum=0.85, nesterov=True,
         weight_decay=1.33e-3, decay_norm_and_bias=True, schedule="onecycle",
         label_smoothing=0.2, crop_padding=2, crop_mode="reflect", flip=True,
         alternate_flip=True, tta="flip-translate", amp="auto"))

_RECORD_BATCH = 2000
_RECORD_HEAD_LR = 1.656
_MUON_RECIPE = Part(
    "airbench94_muon's optimizer and schedule in cifarlab's terms: Muon (lr 0.24, momentum "
    "0.6) on the conv filters; its SGD rates for a summed loss over 2,000 images and logits / "
    "256 become, for a mean loss and fastnet's logits / 9, head lr 0.67 x 2000 x 81 / 256^2 = "
    f"{_RECORD_HEAD_LR}, biases 0.053 x 2000 = 106 = 64 x {_RECORD_HEAD_LR}, and a decay per "
    f"step of 0.004 for both: weight decay 0.004 / {_RECORD_HEAD_LR}; linear decay from the "
    "first step (no warm-up)",
    dict(optimizer="muon", muon_lr=0.24, muon_momentum=0.6,
         weight_decay=0.004 / _RECORD_HEAD_LR, warmup=0.0))


def _muon_batch(size: int) -> Part:
    lr = _RECORD_HEAD_LR * size / _RECORD_BATCH
    return Part(f"batches of {size:,}: the head and bias rates scale with the batch, so that the "
                f"decay per image stays the record's: lr = {_RECORD_HEAD_LR} x {size} / "
                f"{_RECORD_BATCH} = {lr:.4g}", dict(batch_size=size, lr=lr))


_FAST_RECIPE = Part(
    "fast's choices, which 90 shares: all 50,000 images (no validation split, the last epoch "
    "kept), flip-only test views, label smoothing 0.1",
    dict(tta="flip", val_size=0, label_smoothing=0.1))

_RECORD_RUN = Part(
    "94's and 95's run: all 50,000 images, float32 Newton-Schulz (as 94 was tuned), the six "
    "test views for the least sure fifth of each test batch; on the CPU the batch in pieces "
    "of 500, gradients summed (the same step in less memory; a GPU takes it whole)",
    dict(cpu_micro_batch=500, val_size=0, muon_ns_precision="float32", tta_share=0.2))

PRESETS: dict[str, Preset] = {
    "fast": _preset(
        "the default: fastnet 32/64/128, Muon, 2 epochs (the first on 24-pixel images) on all "
        "50,000 training images, flip-only test views",
        _SPEED_RECIPE, _MUON_RECIPE, _muon_batch(500), _FAST_RECIPE, epochs=2,
        temperature=0.588, why="its length",
        network=_fastnet([32, 64, 128], low_res_epochs=1, whiten_bias_share=0.375),
    ),
    "90": _preset(
        "fastnet 48/96/192, Muon, 5 epochs (the first 2 on 24-pixel images) on all 50,000 "
        "training images, the mirror view for the least sure fifth",
        _SPEED_RECIPE, _MUON_RECIPE, _muon_batch(500), _FAST_RECIPE, epochs=5, tta_share=0.2,
        temperature=0.599, why="its length; the mirror view for the least sure fifth",
        network=_fastnet([48, 96, 192], low_res_epochs=2, whiten_bias_share=0.375),
    ),
    "94": _preset(
        "the record's network (fastnet 64/256/256) and optimizer (Muon, batches of 2,000), "
        "9 epochs, the first 3 on 24-pixel images, on all 50,000 training images (no "
        "validation split: the last epoch is kept), six test views for the least sure fifth",
        _SPEED_RECIPE, _MUON_RECIPE, _muon_batch(2000), _RECORD_RUN, epochs=9,
        temperature=0.489, why="its length",
        network=_fastnet([64, 256, 256], low_res_epochs=3, whiten_bias_share=1 / 3),
    ),
    "95": _preset(
        "airbench95's network (fastnet 128/384/384) with 94's recipe (Muon, batches of 2,000), "
        "16 epochs, the first 5 on 24-pixel images, on all 50,000 training images, six test "
        "views for the least sure fifth",
        _SPEED_RECIPE, _MUON_RECIPE, _muon_batch(2000), _RECORD_RUN, epochs=16,
        cpu_micro_batch=400, why="its length; on the CPU pieces of 400, which keep the wider "
        "network's peak memory under 2 GB",
        network=_fastnet([128, 384, 384], low_res_epochs=5, whiten_bias_share=1 / 3),
    ),
    "seed": _preset(
        "the teaching script's recipe: torchvision ResNet-18, per-image-style augmentation, "
        "SGD 0.01, cosine T_max 100, early stopping on val accuracy",
        epochs=300, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4,
        schedule="cosine", t_max=100, patience=10, crop_padding=4, flip=True, rotation=10.0,
        color_jitter=(0.2, 0.2, 0.2, 0.2), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), amp="off",
        why="the teaching script's settings", network=Part("the teaching script's network",
                                                            dict(model="resnet18-tv")),
    ),
    "seed-fast": _preset(
        "the teaching script's network unchanged (torchvision ResNet-18, ImageNet stem, new "
        "10-way fc) at 32 px with the speed recipe: Muon, batch 500, 5 epochs on all 50,000 "
        "training images, flip-only test views",
        _SPEED_RECIPE, _MUON_RECIPE, _muon_batch(500), epochs=5, val_size=0, tta="flip",
        muon_lr=0.18, why="5 epochs on all 50,000 images, flip-only test views; Muon's step "
        "0.18 for this deeper network", network=Part("the teaching script's network",
                                                      dict(model="resnet18-tv")),
    ),
    "finetune": _preset(
        "fine-tune an ImageNet-pretrained tv:/timm: model (default tv:resnet18; pick one with "
        "--model): SGD, body at 0.1x the head's rate, 5% warm-up, cosine, label smoothing 0.1, "
        "crop and flip, 128-pixel inputs, 5 epochs",
        pretrained=True, image_size=128, epochs=5, batch_size=128, lr=0.01, momentum=0.9,
        nesterov=True, body_lr_scale=0.1, weight_decay=1e-4, decay_norm_and_bias=False,
        schedule="cosine", warmup=0.05, label_smoothing=0.1, crop_padding=4, flip=True,
        tta="flip", why="fine-tuning ImageNet weights: the body at a tenth of the new head's "
        "rate, so that the features are adjusted, not overwritten; a short warm-up while the "
        "random head settles; images upscaled to 128 px (BiT's size for small images: "
        "pretrained filters expect objects at ImageNet's scale); no decay on norms and biases",
        network=Part("ImageNet-pretrained torchvision ResNet-18", dict(model="tv:resnet18")),
    ),
    "tutorial": _preset(
        "the beginner's tutorial CNN: three conv+pool layers, no augmentation",
        epochs=20, batch_size=64, lr=0.01, momentum=0.9, weight_decay=0.0,
        schedule="constant", crop_padding=0, flip=False, mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), patience=5, amp="off", why="the tutorial's settings",
        network=Part("the tutorial's CNN", dict(model="tutorial-cnn")),
    ),
    "resnet18": _preset(
        "CIFAR-style ResNet-18 (3x3 stem), 30 epochs, the classic GPU baseline",
        epochs=30, batch_size=128, lr=0.1, nesterov=True, weight_decay=5e-4,
        schedule="onecycle", warmup=2 / 30, label_smoothing=0.1, decay_norm_and_bias=False,
        why="the classic GPU baseline's settings",
        network=Part("CIFAR-style ResNet-18", dict(model="resnet18")),
    ),
}
DEFAULT_PRESET = "fast"
