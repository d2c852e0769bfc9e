"""Networks for 32x32 images, one file per family, all reachable through `create_model`."""

from cifarlab.models import fastnet, mobilenet, resnet, tutorial  # noqa: F401  (registers them)
from cifarlab.models.registry import create_model, describe_model, list_models, register_model

__all__ = ["create_model", "describe_model", "list_models", "register_model"]
