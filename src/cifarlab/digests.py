"""SHA-256 of tensors, to record what a run trained on and what a checkpoint holds, and to
check them when read back."""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def add_tensor(digest: Any, t: torch.Tensor) -> None:
    """Feed a tensor's values (in logical order, whatever its memory layout or dtype) to a
    hashlib digest."""
    t = t.detach().cpu().contiguous()
    if t.numel():  # memoryview cannot cast an empty view
        digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def sha256(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        add_tensor(digest, t)
    return digest.hexdigest()
