"""Settings resolved once: base values <- a preset (its recipe, then its network when the run
trains that network) <- a config file <- explicit overrides, into a validated `Config`; the
preset's temperature where the run is like the runs it was fitted on, and its low-resolution
epochs scaled with --epochs."""

from __future__ import annotations

import os
from typing import Any

from cifarlab.errors import ConfigError
from cifarlab.runs.config import Config, apply_values, base_values
from cifarlab.runs.presets import DEFAULT_PRESET, PRESETS, Preset
from cifarlab.runs.values import coerce, read_config_file

# The settings a preset's temperature depends on, beyond its network and dataset.
CONFIDENCE = ("label_smoothing", "mixup_alpha", "tta", "tta_share")


def _layer(values: dict[str, Any], layer: dict[str, Any], source: str) -> dict[str, Any]:
    """Apply one layer of settings. Its model_args merge into the model's arguments so far
    (a key set to null removes it); a layer that names another model starts them afresh."""
    layer = dict(layer)
    args = layer.pop("model_args", None)
    out = apply_values(values, layer, source)
    if out["model"] != values["model"]:
        out["model_args"] = {}
    if args is not None:
        merged = {**out["model_args"], **coerce("model_args", args, dict)}
        out["model_args"] = {k: v for k, v in merged.items() if v is not None}
    return out


def make_config(preset: str | None = None, config_file: str | os.PathLike | None = None,
                **overrides: Any) -> Config:
    """Resolve base values <- preset <- config file <- overrides into a validated Config.

    A preset's `network` settings (its model, the model's arguments and what only suits that
    network, such as fastnet's low-resolution epochs) apply only when the run trains that
    network: naming another model leaves them out (`cifarlab presets` lists them apart)."""
    file_values = read_config_file(config_file) if config_file else {}
    file_values.pop("tune", None)  # a search space for `cifarlab tune`, not a setting
    name = overrides.get("preset") or preset or file_values.get("preset") or DEFAULT_PRESET
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    recipe = PRESETS[name].recipe
    network = PRESETS[name].network.values
    model = overrides.get("model") or file_values.get("model") or network["model"]
    values = _layer(base_values(), recipe, f"preset {name}")
    if model == network["model"]:
        values = _layer(values, network, f"preset {name}")
    values = _layer(values, file_values, str(config_file))
    values = _layer(values, overrides, "arguments")
    values["preset"] = name
    given = {**file_values, **overrides}
    if "temperature" not in given:
        values["temperature"] = preset_temperature(PRESETS[name], values,
                                                   model == network["model"])
    if "epochs" in given and "low_res_epochs" not in given and model == network["model"]:
        values["low_res_epochs"] = scaled_low_res(network.get("low_res_epochs", 0),
                                                  recipe.get("epochs", values["epochs"]),
                                                  values["epochs"])
    return Config(**values).validate()


def preset_temperature(preset: Preset, values: dict[str, Any], its_network: bool
                       ) -> float | None:
    """The preset's temperature for a run like those it was fitted on: its network, on
    CIFAR-10, with its label smoothing, mixup and test views (what sets how sure a model is);
    None for another run, which fits its own with a validation split."""
    same = all(values[k] == preset.recipe.get(k, base_values()[k]) for k in CONFIDENCE)
    return preset.temperature if its_network and same and values["dataset"] == "cifar10" else None


def scaled_low_res(preset_low: int, preset_epochs: int, epochs: int) -> int:
    """A preset's low-resolution epochs for a run shortened or lengthened with --epochs: the
    same share of the run (rounded), and at least one epoch at full resolution when the
    preset has one."""
    if not preset_low:
        return 0
    return max(0, min(epochs - 1, round(preset_low * epochs / preset_epochs)))
