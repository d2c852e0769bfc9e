"""Models by name from other libraries: `tv:NAME` (torchvision) and `timm:NAME` (timm, the
optional extra `cifarlab[timm]`), each with a new head for the dataset's classes and, on
request, ImageNet-pretrained weights fetched into the library's usual cache."""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from cifarlab.errors import ModelError, first_line

SOURCES = {"tv": "torchvision", "timm": "timm"}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # what pretrained weights expect


def parse_name(name: str) -> tuple[str, str] | None:
    """("tv", "resnet50") for "tv:resnet50"; None for cifarlab's own names."""
    source, sep, arch = name.partition(":")
    return (source, arch) if sep and source in SOURCES else None


def _timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ModelError("timm models need the timm package: pip install 'cifarlab[timm]'"
                         ) from None
    return timm


def list_source_models(source: str, pattern: str | None = None) -> list[str]:
    """The classification models of `source` ("tv" or "timm"), filtered by a glob pattern or,
    without wildcards, a substring (case-insensitive)."""
    if source == "tv":
        import torchvision.models as tvm

        names = tvm.list_models(module=tvm)  # classification models only
    elif source == "timm":
        names = _timm().list_models()
    else:
        raise ModelError(f"unknown model source {source!r}; choose tv or timm")
    if not pattern:
        return sorted(names)
    pattern = pattern.lower()
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return sorted(n for n in names if fnmatch.fnmatch(n.lower(), pattern))


HUB = "hf-hub:"  # timm:hf-hub:ORG/NAME, a model repository of the Hugging Face hub


def check_name(name: str) -> None:
    """Raise a one-line ModelError with the closest names if `tv:`/`timm:` `name` is unknown.
    A `timm:hf-hub:ORG/NAME` is checked when it is fetched."""
    source, arch = parse_name(name) or ("", "")
    if source == "timm" and arch.startswith(HUB):
        repo = arch[len(HUB):].partition("@")[0]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ModelError(f"{name} is not a hub name; write timm:hf-hub:ORG/NAME")
        _timm()
        return
    if source == "timm" and _timm().is_model(arch):  # also takes tags: resnet50.a1_in1k
        return
    known = list_source_models(source)
    if arch in known:
        return
    close = difflib.get_close_matches(arch, known, n=4, cutoff=0.6)
    hint = f"; closest: {', '.join(f'{source}:{c}' for c in close)}" if close else ""
    raise ModelError(f"{SOURCES[source]} has no model {arch!r}{hint} (list them: cifarlab "
                     f"models --source {source})")


def create_external(name: str, num_classes: int, pretrained: bool = False,
                    **kwargs: Any) -> nn.Module:
    """Build `tv:NAME` or `timm:NAME` with a `num_classes`-way head; `pretrained` loads the
    family's default ImageNet weights into the body (the head is new either way)."""
    check_name(name)
    source, arch = parse_name(name)  # type: ignore[misc]
    try:
        if source == "timm":
            return _create_timm(arch, num_classes, pretrained, kwargs)
        return _create_torchvision(arch, num_classes, pretrained, kwargs)
    except ModelError:
        raise
    except (TypeError, ValueError, RuntimeError) as e:  # model_args it does not take, or values
        first = first_line(e)
        raise ModelError(f"model {name!r} cannot be built with model_args {kwargs}: {first}"
                         ) from None


def _create_torchvision(arch: str, num_classes: int, pretrained: bool,
                        kwargs: dict[str, Any]) -> nn.Module:
    import torchvision.models as tvm

    if not pretrained:
        return tvm.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    weights = tvm.get_model_weights(arch).DEFAULT
    try:  # torchvision fetches into TORCH_HOME's hub/checkpoints, or reads the file there
        model = tvm.get_model(arch, weights=weights, **kwargs)
    except OSError as e:  # no network (URLError), refused, ...
        import torch.hub

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise ModelError(f"cannot download the ImageNet weights of tv:{arch} ({e}); without "
                         f"network, put {weights.url} at {cached}, or pass --weights PATH"
                         ) from None
    replace_head(model, len(weights.meta["categories"]), num_classes)
    return model


def _create_timm(arch: str, num_classes: int, pretrained: bool,
                 kwargs: dict[str, Any]) -> nn.Module:
    timm = _timm()
    try:  # timm fetches from the Hugging Face hub into its cache (HF_HOME, HF_HUB_CACHE)
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except TypeError:
        raise
    except Exception as e:  # noqa: BLE001 - hub and network errors of several libraries
        if not pretrained and not arch.startswith(HUB):
            raise
        raise ModelError(_fetch_failed(timm, arch, e)) from None


def _fetch_failed(timm: ModuleType, arch: str, e: Exception) -> str:
    """What to do when timm cannot fetch `arch`'s configuration or weights."""
    from huggingface_hub import constants

    if arch.startswith(HUB):
        repo = arch[len(HUB):]
        url = f"https://huggingface.co/{repo}"
    else:
        cfg = timm.models.get_pretrained_cfg(arch)
        repo = getattr(cfg, "hf_hub_id", None)
        url = (f"https://huggingface.co/{repo}/resolve/main/model.safetensors" if repo
               else getattr(cfg, "url", None) or "its weights file")
    return (f"cannot fetch timm:{arch} from {repo or url} ({type(e).__name__}: "
            f"{first_line(e)[:200]}); "
            f"without network, fill the Hugging Face cache ({constants.HF_HUB_CACHE}) on a "
            f"machine with network and set HF_HUB_OFFLINE=1, or download {url} and pass "
            "--weights PATH")


def pretrained_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std that the pretrained weights of `tv:`/`timm:` `name` were trained
    with, from the weights' own configuration (timm's pretrained_cfg, a hub repository's
    config.json, torchvision's weights' transforms); ImageNet's where they say nothing."""
    source, arch = parse_name(name) or ("", "")
    if source == "tv":
        import torchvision.models as tvm

        try:
            t = tvm.get_model_weights(arch).DEFAULT.transforms()
            return tuple(t.mean), tuple(t.std)
        except (ValueError, KeyError, AttributeError, TypeError):
            return IMAGENET_STATS
    if source != "timm":
        return IMAGENET_STATS
    if arch.startswith(HUB):
        cfg = _hub_pretrained_cfg(arch[len(HUB):])
    else:
        found = _timm().models.get_pretrained_cfg(arch)
        cfg = found.to_dict() if found is not None else {}
    if cfg.get("mean") and cfg.get("std"):
        return tuple(cfg["mean"]), tuple(cfg["std"])
    return IMAGENET_STATS


def _hub_pretrained_cfg(repo: str) -> dict[str, Any]:
    """A hub repository's pretrained_cfg, as timm reads it (its config file)."""
    try:
        return dict(_timm().models.load_model_config_from_hf(repo)[0])
    except Exception as e:  # noqa: BLE001 - network, missing repo, offline without cache
        raise ModelError(_fetch_failed(_timm(), HUB + repo, e)) from None


def find_head(model: nn.Module, num_classes: int) -> str:
    """The qualified name of the classifier: the last Linear (or 1x1 Conv2d, as SqueezeNet's)
    whose output size is the number of classes."""
    found = ""
    for name, module in model.named_modules():
        if (isinstance(module, nn.Linear) and module.out_features == num_classes) or (
                isinstance(module, nn.Conv2d) and module.out_channels == num_classes
                and module.kernel_size == (1, 1)):
            found = name
    if not found:
        raise ModelError(f"cannot find the classifier of {type(model).__name__}: no layer "
                         f"with {num_classes} outputs")
    return found


def replace_head(model: nn.Module, old_classes: int, num_classes: int) -> str:
    """Swap the `old_classes`-way classifier for a fresh `num_classes`-way one; its name."""
    name = find_head(model, old_classes)
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    return name


def check_input_size(model: nn.Module, name: str, size: int, device: Any) -> None:
    """Fail early, in one line, for a network that cannot take `size`-pixel images (ViTs
    want the size they were built for): one forward pass of two blank images."""
    import torch

    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, 3, size, size, device=device))
    except (AssertionError, RuntimeError, ValueError) as e:
        first = first_line(e)
        raise ModelError(f"{name} cannot take {size}x{size} images ({first}); set "
                         f"--image-size to a size it takes (ViTs: 224)") from None
    finally:
        model.train(was_training)
