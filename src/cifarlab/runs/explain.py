"""A preset's recipe, read top to bottom (`cifarlab presets NAME --explain`): each layer in the
order it applies, with why its numbers are what they are and the values it sets (those a later
layer replaces marked), the network, the temperature, and the settings a run then resolves
to. Drawn from the declarations in runs/presets.py that training uses: no second copy."""

from __future__ import annotations

import shlex
import textwrap
from typing import Any

from cifarlab.runs.config import base_values
from cifarlab.runs.presets import PRESETS, Part
from cifarlab.runs.resolve import make_config
from cifarlab.runs.values import as_argv

WIDTH = 92


def explain_preset(name: str) -> list[str]:
    """The lines that explain preset `name`."""
    preset = PRESETS[name]
    lines = [*_wrapped(f"{name}: {preset.description}"), ""]
    layers = [*preset.parts, preset.network]
    for i, part in enumerate(layers, 1):
        later = {k for p in layers[i:] for k in p.values}
        title = "network (left out when you name another --model)" if part is preset.network \
            else f"layer {i}"
        lines += _layer(title, part, later)
    if preset.temperature is not None:
        lines += _wrapped(f"temperature {preset.temperature}: divides its runs' test logits "
                          "on CIFAR-10 so that the probabilities are calibrated: the mean of "
                          "the temperatures fitted on the validation splits of its development "
                          "runs (benchmarks/preset-temperatures.json)") + [""]
    resolved = resolved_settings(name)
    lines += _wrapped("With --epochs N the low-resolution epochs keep their share of the run; "
                      "another --model leaves the network layer out. Resolved, the run is "
                      "the base values (cifarlab train --help) with:")
    return lines + _options(resolved)


def resolved_settings(name: str) -> dict[str, Any]:
    """The settings of `cifarlab train --preset NAME` that differ from the base values."""
    cfg = make_config(name).to_dict()
    base = base_values()
    return {k: v for k, v in cfg.items() if k != "preset" and v != base[k]
            and not (isinstance(v, list) and tuple(v) == base[k])}


def _layer(title: str, part: Part, later: set[str]) -> list[str]:
    lines = _wrapped(f"{title}: {part.why}")
    for key, value in part.values.items():
        shown = shlex.join(as_argv({key: value}))
        lines.append(f"    {shown}" + ("   (replaced below)" if key in later else ""))
    return lines + [""]


def _options(values: dict[str, Any]) -> list[str]:
    """Options as command-line text, lines broken between options only."""
    lines = [""]
    for key, value in values.items():
        option = shlex.join(as_argv({key: value}))
        if lines[-1] and len(lines[-1]) + len(option) + 3 > WIDTH:
            lines.append("")
        lines[-1] += f" {option}"
    return ["  " + line.strip() for line in lines]


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ")
