"""A dataset as the rest of cifarlab sees it: its splits as uint8 tensors, its class names and
its per-channel statistics; and the stratified validation split both kinds of dataset use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cifarlab.digests import sha256
from cifarlab.errors import DataError

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel, in [0, 1] units


@dataclass
class DataSplits:
    """All splits as tensors: images uint8 (N, 3, H, W), labels int64 (N,); for CIFAR and
    image folders alike. `stats` is the training images' mean and std (CIFAR's published ones,
    an image folder's measured), the normalisation a run uses unless it sets its own."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    stats: Stats
    # An image folder's file names per split, relative to the data folder (None for CIFAR).
    files: dict[str, list[str]] | None = None
    # What `--exclude` left out of the training images: its source, and the indices.
    excluded: dict[str, Any] | None = None

    @property
    def has_test(self) -> bool:
        return len(self.test_labels) > 0

    @property
    def evaluation_split(self) -> str:
        """Where the chosen weights are scored: the test set; for an image folder without
        test/, the validation split (its figures then say so)."""
        return "test" if self.has_test else "val"

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of "train", "val" or "test"."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"no split {name!r}; choose train, val or test")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def fingerprint(self, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Any]:
        """What this data is, to record with a run and check later: the class names, and per
        split (of `splits`) the number of images and a SHA-256 of its pixels and labels
        (cheap: ~0.1 s for all of CIFAR-10)."""
        record: dict[str, Any] = {"classes": list(self.classes)}
        for name in splits:
            images, labels = self.split(name)
            record[name] = {"images": len(labels), "sha256": sha256(images, labels)}
        if self.excluded:
            record["excluded"] = self.excluded
        return record

    def file_of(self, split: str, index: int) -> str | None:
        """An image folder's file for image `index` of `split`, relative to the data folder."""
        return self.files[split][index] if self.files else None

    def to(self, device: torch.device | str) -> DataSplits:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                 for k, v in vars(self).items()}
        return DataSplits(**moved)


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Indices (train, val): val takes the same share of every class, chosen by `seed`."""
    if val_size == 0:
        return np.arange(len(labels)), np.arange(0)
    if val_size >= len(labels):
        raise DataError(f"val_size {val_size} leaves no training images out of {len(labels)}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder rounding so the per-class shares add up to exactly val_size.
    exact = counts * val_size / len(labels)
    take = np.floor(exact).astype(int)
    take[np.argsort(exact - take)[::-1][: val_size - take.sum()]] += 1
    val = [rng.permutation(np.flatnonzero(labels == c))[:k]
           for c, k in zip(classes, take, strict=True)]
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def changed_splits(recorded: dict[str, Any], now: dict[str, Any], splits: tuple[str, ...]
                   ) -> str | None:
    """How today's data differs from a run's record in `splits` ("the class list; train: 900
    images then, 960 now"), or None when it is the same."""
    said = []
    if recorded.get("classes") != now["classes"]:
        said.append(f"the classes ({len(recorded.get('classes') or [])} then, "
                    f"{len(now['classes'])} now)")
    for name in splits:
        then = recorded.get(name) or {}
        today = now[name]
        if then.get("sha256") != today["sha256"]:
            counts = (f"{then.get('images')} images then, {today['images']} now"
                      if then.get("images") != today["images"] else "other images, as many")
            said.append(f"{name}: {counts}")
    return "; ".join(said) or None


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """`k` disjoint folds covering all indices, each with the same share of every class
    (within one image), chosen by `seed`."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c))
                            for c in np.unique(labels)]) if len(labels) else np.arange(0)
    return [np.sort(order[f::k]) for f in range(k)]
