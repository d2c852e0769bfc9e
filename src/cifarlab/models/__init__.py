"""Networks for 32x32 images, one file per family, all reachable through `create_model`; any
torchvision or timm model by prefix (`tv:NAME`, `timm:NAME`)."""

from cifarlab.models import fastnet, mobilenet, resnet, resnet9, tutorial  # noqa: F401
from cifarlab.models.external import find_head, list_source_models
from cifarlab.models.registry import (
    check_model,
    create_model,
    describe_model,
    list_models,
    register_model,
)

__all__ = ["check_model", "create_model", "describe_model", "find_head", "list_models",
           "list_source_models", "register_model"]
