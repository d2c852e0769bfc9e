"""Initial weights from a local file (`--weights PATH`): a state dict in a .pth/.pt file
(read with `weights_only=True`: a pickle that would run code is refused) or a .safetensors
file. The file's classifier is left out, the model's new head kept; any other key that does
not fit is an error that names it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import nn

from cifarlab.errors import ModelError, first_line
from cifarlab.models.external import find_head

_CONTAINERS = ("state_dict", "model", "model_state_dict", "module")  # common wrappers


def read_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in `path`, unwrapped from common containers (a cifarlab checkpoint's
    "state_dict", Lightning's, ...), DDP's "module." prefix removed."""
    p = Path(path)
    if p.is_dir():
        raise ModelError(f"--weights {p} is a folder; give the weights file in it "
                         "(.pt, .pth or .safetensors)")
    if not p.is_file():
        raise ModelError(f"weights file {p} not found")
    from safetensors import SafetensorError

    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    # a text file read as a pickle fails in several ways (KeyError: 101, ...)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, KeyError,
            IndexError, TypeError, AttributeError, SafetensorError) as e:
        first = first_line(e)
        raise ModelError(f"weights file {p} is not a plain state dict of tensors (it was read "
                         f"without running any code in it): {first}") from None
    while isinstance(state, dict):
        inner = next((state[k] for k in _CONTAINERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelError(f"weights file {p} holds no state dict (a mapping of names to "
                         f"tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights_file(model: nn.Module, path: str | os.PathLike, num_classes: int) -> None:
    """Load `path` into `model`, all but its classifier; refuse, naming the keys, a file made
    for another architecture."""
    state = read_weights_file(path)
    head = find_head(model, num_classes)
    is_head = lambda key: key.startswith(head + ".")  # noqa: E731
    own = {k: v for k, v in model.state_dict().items() if not is_head(k)}
    theirs = {k: v for k, v in state.items() if not is_head(k)}
    missing = sorted(k for k in own if k not in theirs and not k.endswith("num_batches_tracked"))
    extra = sorted(k for k in theirs if k not in own)
    shapes = sorted(k for k in own if k in theirs and own[k].shape != theirs[k].shape)
    problems = [(what, keys) for what, keys in (("missing in the file", missing),
                ("not in the model", extra), ("of another shape", shapes)) if keys]
    if problems:
        said = "; ".join(f"{len(keys)} {what}: {', '.join(keys[:4])}"
                         f"{', ...' if len(keys) > 4 else ''}" for what, keys in problems)
        raise ModelError(f"weights file {path} does not fit this model ({said}); was it made "
                         f"for another architecture?")
    model.load_state_dict(theirs, strict=False)
