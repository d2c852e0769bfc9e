"""Stage 2, models: networks for 32x32 images, one file per family, all reachable through
`create_model` (a registry, as in timm); any torchvision or timm model by prefix (`tv:NAME`,
`timm:NAME`); and `Classifier`, the network wrapped to take pixels and give logits, which every
use of a model goes through."""

from cifarlab.models import fastnet, mobilenet, resnet, resnet9, tutorial  # noqa: F401
from cifarlab.models.classifier import TTA_CHOICES, Classifier, predict_logits, tta_logits
from cifarlab.models.external import IMAGENET_STATS, find_head, list_source_models
from cifarlab.models.registry import (
    check_model,
    create_model,
    describe_model,
    list_models,
    register_model,
)

__all__ = ["Classifier", "IMAGENET_STATS", "TTA_CHOICES", "check_model", "create_model",
           "describe_model", "find_head", "list_models", "list_source_models", "predict_logits",
           "register_model", "tta_logits"]
