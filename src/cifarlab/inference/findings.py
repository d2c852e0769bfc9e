"""An audit's findings, one dict per image to look at, from the out-of-sample probabilities
and embeddings of a dataset's images: likely wrong labels (confident learning), identical and
near copies within a split, copies across splits (leakage: a test or validation image that
the training split also holds) and near-constant images.

Each finding names its image (`split`, `index`, and for an image folder `file`), its `kind`,
a `score` (higher: surer) and, for copies, its `partner`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cifarlab.data import DataSplits
from cifarlab.inference.duplicates import Pair, identical_pairs, near_pairs
from cifarlab.inference.label_issues import find_label_issues

SPLITS = ("train", "val", "test")
CONSTANT_STD = 2.0  # pixel standard deviation (of 255) under which an image is flat


def image_ref(data: DataSplits, split: str, index: int) -> dict[str, Any]:
    ref: dict[str, Any] = {"split": split, "index": int(index)}
    if data.files:
        ref["file"] = data.file_of(split, int(index))
    return ref


def label_findings(data: DataSplits, probs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Likely wrong labels of every split, most likely first."""
    found = []
    for split, p in probs.items():
        labels = data.split(split)[1].numpy()
        issues = find_label_issues(p, labels)
        for i, s, c in zip(issues.indices, issues.suggested, issues.confidence, strict=True):
            found.append({**image_ref(data, split, i), "kind": "label",
                          "label": data.classes[labels[i]], "suggested": data.classes[s],
                          "score": round(1.0 - float(c), 4),
                          "suggested_probability": round(float(p[i, s]), 4)})
    return found


def all_images(data: DataSplits) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """Every split's images, concatenated, and (split, index) of each row."""
    parts = [(s, data.split(s)[0]) for s in SPLITS if len(data.split(s)[1])]
    where = [(s, i) for s, x in parts for i in range(len(x))]
    return torch.cat([x for _, x in parts]), where


def copy_findings(data: DataSplits, embeddings: torch.Tensor) -> list[dict[str, Any]]:
    """Identical and near copies: within a split (`duplicate`, `near-duplicate`: the later
    image is the finding), across splits (`leakage`: the image of the later split)."""
    images, where = all_images(data)
    found = []
    pairs = identical_pairs(images) + near_pairs(images, embeddings)
    for pair in sorted(pairs, key=lambda p: (-p.pixels, -p.embedding)):
        found.append(copy_finding(data, pair, where))
    return found


def copy_finding(data: DataSplits, pair: Pair, where: list[tuple[str, int]]) -> dict[str, Any]:
    """The later image of the pair is the finding: across splits, a test image the training
    split holds too is leakage, as is one the validation split (which chose the weights)
    holds."""
    sa, ia = where[pair.a]
    sb, ib = where[pair.b]
    identical = pair.pixels == 1.0 and pair.embedding == 1.0
    kind = ("duplicate" if identical else "near-duplicate") if sa == sb else "leakage"
    labels = data.split(sb)[1][ib], data.split(sa)[1][ia]
    return {**image_ref(data, sb, ib), "kind": kind, "identical": identical,
            "score": pair.pixels, "embedding_similarity": pair.embedding,
            "label": data.classes[int(labels[0])],
            "partner": {**image_ref(data, sa, ia), "label": data.classes[int(labels[1])]}}


def constant_findings(data: DataSplits) -> list[dict[str, Any]]:
    """Near-constant images (a blank or failed capture): pixel std under CONSTANT_STD."""
    found = []
    for split in SPLITS:
        images = data.split(split)[0]
        for start in range(0, len(images), 8192):
            std = images[start:start + 8192].float().flatten(1).std(1)
            for i in torch.nonzero(std < CONSTANT_STD).flatten().tolist():
                found.append({**image_ref(data, split, start + i), "kind": "constant",
                              "score": round(1.0 - float(std[i]) / CONSTANT_STD, 4)})
    return found


def summarise(findings: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Images per kind and split ({kind: {split: n}}): an image with two copies counts once."""
    images: dict[str, dict[str, set[int]]] = {}
    for f in findings:
        images.setdefault(f["kind"], {}).setdefault(f["split"], set()).add(f["index"])
    return {kind: {split: len(found) for split, found in per.items()}
            for kind, per in images.items()}
