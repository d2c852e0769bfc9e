"""The plain part of a data audit: how many images each split holds, per class, and for an
image folder what its files are (sizes, colour modes) and which could not be read."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from cifarlab.data.folders import scan
from cifarlab.data.splits import DataSplits

SPLITS = ("train", "val", "test")


def data_check(data: DataSplits, dataset: str, data_dir: str | os.PathLike | None
               ) -> dict[str, Any]:
    """{"splits": per split its images and count per class, "files": an image folder's sizes
    and modes, "unreadable": files that could not be decoded, "lines": the same in words}."""
    splits = {}
    for split in SPLITS:
        labels = data.split(split)[1]
        if len(labels):
            counts = torch.bincount(labels, minlength=len(data.classes)).tolist()
            splits[split] = {"images": len(labels), "per_class": counts}
    check: dict[str, Any] = {"splits": splits, "files": None, "unreadable": []}
    if dataset == "folder" and data_dir is not None:
        check["files"], check["unreadable"] = folder_files(Path(data_dir), data)
    check["lines"] = check_lines(check, data.classes)
    return check


def folder_files(root: Path, data: DataSplits) -> tuple[dict[str, Any], list[str]]:
    """The files' pixel sizes and colour modes (most common first), from their headers; and
    the image files no split holds (the ones decoding skipped), relative to `root`."""
    from PIL import Image

    _, files = scan(root)
    loaded = {f for names in (data.files or {}).values() for f in names}
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    unreadable = []
    for entries in files.values():
        for path, _ in entries:
            name = path.relative_to(root).as_posix()
            if name not in loaded:
                unreadable.append(name)
                continue
            try:
                with Image.open(path) as im:
                    sizes[f"{im.width}x{im.height}"] += 1
                    modes[im.mode] += 1
            except (OSError, ValueError):
                unreadable.append(name)
    return {"sizes": dict(sizes.most_common(10)), "distinct_sizes": len(sizes),
            "modes": dict(modes.most_common())}, unreadable


def check_lines(check: dict[str, Any], classes: list[str]) -> list[str]:
    lines = []
    for split, v in check["splits"].items():
        counts = v["per_class"]
        low = min(counts)
        high = max(counts)
        balance = ("balanced" if low == high else
                   f"from {low:,} ({classes[counts.index(low)]}) to {high:,} "
                   f"({classes[counts.index(high)]}) per class")
        lines.append(f"{split}: {v['images']:,} images, {balance}")
    if check["files"]:
        f = check["files"]
        top = ", ".join(f"{k} ({n:,})" for k, n in list(f["sizes"].items())[:3])
        lines.append(f"files: {f['distinct_sizes']:,} sizes, most common {top}; colour modes "
                     + ", ".join(f"{k} ({n:,})" for k, n in f["modes"].items()))
    if check["files"] is not None or check["unreadable"]:
        lines.append(f"unreadable files: {len(check['unreadable']):,}"
                     + (f", e.g. {check['unreadable'][0]}" if check["unreadable"] else ""))
    return lines
