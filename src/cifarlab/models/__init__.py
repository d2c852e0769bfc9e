"""Networks for 32x32 images, one file per family, all reachable through `create_model`."""

from cifarlab.models import fastnet, mobilenet, resnet, resnet9, tutorial  # noqa: F401
from cifarlab.models.registry import create_model, describe_model, list_models, register_model

__all__ = ["create_model", "describe_model", "list_models", "register_model"]
