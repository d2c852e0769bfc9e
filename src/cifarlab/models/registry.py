"""Model registry: `create_model(name, num_classes)` builds any registered network (as in timm),
or by prefix one of torchvision's (`tv:NAME`) or timm's (`timm:NAME`)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from typing import Any

from torch import nn

from cifarlab.errors import ModelError, first_line
from cifarlab.models import external

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a constructor `fn(num_classes, **kwargs) -> nn.Module` available by name."""

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return add


def list_models() -> list[str]:
    return sorted(_MODELS)


def describe_model(name: str) -> str:
    """The first line of the constructor's docstring."""
    doc = _MODELS[name].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def check_model(name: str) -> None:
    """Raise a one-line ModelError, with the closest names, if `name` cannot be built."""
    if external.parse_name(name):
        external.check_name(name)
    elif name not in _MODELS:
        close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.5)
        if name in external.list_source_models("tv"):  # e.g. resnet50: torchvision has it
            close = [f"tv:{name}", *close]
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise ModelError(f"unknown model {name!r}{hint}; choose one of "
                         f"{', '.join(list_models())}, or tv:NAME / timm:NAME (see cifarlab "
                         f"models)")


def create_model(name: str, num_classes: int = 10, pretrained: bool = False,
                 weights: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build model `name` with a `num_classes`-way output. `weights` initialises it from a
    local file (all but the classifier); else `pretrained` fetches ImageNet weights (tv:/timm:
    models only)."""
    check_model(name)
    if external.parse_name(name):
        model = external.create_external(name, num_classes, pretrained and not weights,
                                         **kwargs)
    else:
        if pretrained and not weights:
            raise ModelError(f"cifarlab's own {name!r} has no pretrained weights; use a tv:NAME "
                             f"or timm:NAME model, or --weights PATH")
        try:
            model = _MODELS[name](num_classes=num_classes, **kwargs)
        except (TypeError, ValueError, RuntimeError) as e:  # bad model_args, or bad values
            first = first_line(e)
            raise ModelError(f"model {name!r} cannot be built with model_args {kwargs}: "
                             f"{first}") from None
    if weights:
        from cifarlab.models.weights_file import load_weights_file

        load_weights_file(model, weights, num_classes)
    return model
