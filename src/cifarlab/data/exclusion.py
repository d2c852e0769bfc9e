"""Images to leave out (`train --exclude FILE`, `evaluate --exclude FILE`): an audit's JSON
(`cifarlab audit --json`), or a text file with one training image per line, as its index
(CIFAR: its position in the training batches) or its file path (an image folder: relative to
the data folder, or absolute).

Indices count the training images as the dataset holds them, before a validation split is
drawn: the audit's own numbering. An audit's JSON also records the training images' digest,
so its indices are never applied to images other than the ones it examined.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab.digests import sha256
from cifarlab.errors import DataError

LEFT_OUT_OF_TRAINING = ("label", "duplicate", "near-duplicate", "constant")


@dataclass(frozen=True)
class Exclusion:
    """Training images to leave out, by index or by file (relative to the data folder)."""

    source: str
    indices: frozenset[int] = frozenset()
    files: frozenset[str] = frozenset()
    train_sha256: str | None = None  # the training images the audit examined
    reasons: dict[str, int] = field(default_factory=dict)  # findings per kind

    def mask(self, count: int, files: list[str] | None) -> np.ndarray:
        """Which of `count` training images (named `files`, for an image folder) to keep."""
        too_far = [i for i in self.indices if not 0 <= i < count]
        if too_far:
            raise DataError(f"{self.source} names training image {max(too_far)}, and there are "
                            f"{count} (0 to {count - 1}); was it written for other data?")
        keep = np.ones(count, dtype=bool)
        keep[sorted(self.indices)] = False
        if self.files:
            if files is None:
                raise DataError(f"{self.source} names image files; CIFAR's images are named by "
                                "their index (0 = the first training image)")
            unknown = self.files - set(files)
            if unknown:
                raise DataError(f"{self.source} names {len(unknown)} file(s) that are not "
                                f"training images here, e.g. {sorted(unknown)[0]}")
            keep &= np.array([f not in self.files for f in files], dtype=bool)
        return keep


def read_exclusion(path: str | os.PathLike, data_dir: str | os.PathLike | None = None
                   ) -> Exclusion:
    """The training images an audit's JSON or a list file names."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the exclusion list {path}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    if text.lstrip().startswith("{"):
        return _from_audit(path, text)
    indices = set()
    files = set()
    root = Path(data_dir).resolve() if data_dir else None
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.isdigit():
            indices.add(int(entry))
            continue
        files.add(_relative(Path(entry), root, f"{path}, line {number}"))
    return Exclusion(str(path), frozenset(indices), frozenset(files))


def _relative(file: Path, root: Path | None, where: str) -> str:
    if not file.is_absolute():
        return file.as_posix()
    if root is None or not file.resolve().is_relative_to(root):
        raise DataError(f"{where}: {file} is not inside the data folder; give paths relative "
                        "to it (train/CLASS/IMAGE)")
    return file.resolve().relative_to(root).as_posix()


def _from_audit(path: Path, text: str) -> Exclusion:
    try:
        audit: Any = json.loads(text)
        findings = audit["findings"]
        picked = [f for f in findings if f["split"] == "train" and f["kind"] in
                  LEFT_OUT_OF_TRAINING]
        # A training image that is a copy of a test or validation image is left out too.
        picked += [{**f["partner"], "kind": f["kind"]} for f in findings
                   if f["kind"] == "leakage" and f["partner"]["split"] == "train"]
        indices = frozenset(int(f["index"]) for f in picked)
        sha = audit["data"]["train"]["sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is neither an audit's JSON (cifarlab audit --json) nor a list "
                        f"of images ({type(e).__name__}: {e})") from None
    reasons: dict[str, int] = {}
    for f in picked:
        reasons[f["kind"]] = reasons.get(f["kind"], 0) + 1
    return Exclusion(str(path), indices, frozenset(), sha, reasons)


def without_excluded(exclusion: Exclusion | None, images: torch.Tensor, labels: torch.Tensor,
                     files: list[str] | None, train_idx: np.ndarray
                     ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The training indices `train_idx` (into all the training images, `images`) without the
    ones `exclusion` names, and what a run records of it (data.json: the list, the images
    left out). The validation split is drawn before and stays the same: runs with and without
    an exclusion are validated on the same images. An audit's indices apply only to the
    images it examined."""
    if exclusion is None:
        return train_idx, None
    if exclusion.train_sha256 and exclusion.train_sha256 != sha256(images, labels):
        raise DataError(f"the training images are not those {exclusion.source} examined (they "
                        "changed since); audit them again")
    keep = exclusion.mask(len(labels), files)
    removed = train_idx[~keep[train_idx]]
    record = {"from": exclusion.source, "images": len(removed), "indices": removed.tolist(),
              **({"findings": exclusion.reasons} if exclusion.reasons else {})}
    return train_idx[keep[train_idx]], record


def evaluation_exclusions(path: str | os.PathLike, split: str, images: torch.Tensor,
                          labels: torch.Tensor, files: list[str] | None
                          ) -> dict[str, np.ndarray]:
    """Images of an evaluated split to leave out, by reason: from an audit's JSON, "leaked"
    (a copy of a training or validation image) and "mislabeled"; from a list file, "listed"
    (indices or files of `split`)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    if text is None:
        raise DataError(f"cannot read the exclusion list {path}: no such file")
    if not text.lstrip().startswith("{"):
        listed = read_exclusion(path)
        return {"listed": np.flatnonzero(~listed.mask(len(labels), files))}
    try:
        audit = json.loads(text)
        examined = audit["data"][split]["sha256"]
        mine = [f for f in audit["findings"] if f["split"] == split]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not an audit of this dataset's {split} split "
                        f"({type(e).__name__}: {e})") from None
    if examined != sha256(images, labels):
        raise DataError(f"the {split} images are not those {path} examined; audit them again")
    leaked = {f["index"] for f in mine if f["kind"] == "leakage"}
    wrong = {f["index"] for f in mine if f["kind"] == "label"}
    return {"leaked": np.array(sorted(leaked), dtype=np.int64),
            "mislabeled": np.array(sorted(wrong), dtype=np.int64),
            "leaked or mislabeled": np.array(sorted(leaked | wrong), dtype=np.int64)}
