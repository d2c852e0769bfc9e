"""Model registry: `create_model(name, num_classes)` builds any registered network (as in timm)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cifarlab.errors import ModelError

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


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build the registered model `name` with a `num_classes`-way output."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    try:
        return _MODELS[name](num_classes=num_classes, **kwargs)
    except TypeError as e:  # bad model_args
        raise ModelError(f"model {name!r} does not accept these arguments: {e}") from None
