"""Your own images as a dataset (`--dataset folder --data-dir PATH`), in torchvision's
ImageFolder layout: PATH/train/CLASS/*.png|jpg|webp|..., optionally PATH/val/ and PATH/test/
alike. Class names are the folder names.

Every image is decoded once, in threads, by the code `predict` uses (cifarlab.data.image_files: EXIF
rotation, alpha, palette, 16-bit; centre crop; resized to --image-size), and kept as uint8
tensors as CIFAR is. The decoded tensors are cached in a writable cache folder
($CIFARLAB_CACHE_DIR, else the user cache folder; never the data folder, which may be
read-only), keyed on the files' paths, sizes and modification times, so a second run starts
fast. An unreadable image is one line on standard error and is skipped, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cifarlab.data.exclusion import Exclusion, without_excluded
from cifarlab.data.image_files import image_extensions, try_load_image
from cifarlab.data.splits import DataSplits, stratified_split
from cifarlab.errors import CifarlabError, DataError
from cifarlab.files import publishing

SPLITS = ("train", "val", "test")
VAL_SHARE = 0.1  # of train/, when there is no val/ and no --val-size
CACHE_VERSION = 2  # bump when decoding changes what a file becomes (2: file names kept)
SHOWN_ERRORS = 20  # unreadable files named one per line, then a count


def cache_dir() -> Path:
    """$CIFARLAB_CACHE_DIR, else $XDG_CACHE_HOME/cifarlab, else ~/.cache/cifarlab."""
    if os.environ.get("CIFARLAB_CACHE_DIR"):
        return Path(os.environ["CIFARLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarlab"


def scan(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """(class names, {split: [(file, label), ...]}) for the splits that exist; clear errors
    for a missing train/, an empty class, or a val/test class that train/ lacks."""
    if not (root / "train").is_dir():
        raise DataError(f"image folder {root} has no train/ folder: expected "
                        f"{root}/train/CLASS/IMAGE (and optionally val/ and test/ alike)")
    exts = image_extensions()
    classes = sorted(d.name for d in (root / "train").iterdir()
                     if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}/train holds no class folders: expected {root}/train/CLASS/IMAGE")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        found = []
        for d in sorted(p for p in (root / split).iterdir() if p.is_dir()
                        and not p.name.startswith(".")):
            if d.name not in classes:
                raise DataError(f"{d} is a class that {root}/train lacks; every class needs "
                                f"training images")
            images = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not images and split == "train":
                raise DataError(f"class folder {d} holds no images (.png, .jpg, .webp, ...); "
                                f"add some or remove the folder")
            found += [(f, classes.index(d.name)) for f in images]
        files[split] = found
    return classes, files


def cache_key(root: Path, files: dict[str, list[tuple[Path, int]]], size: int) -> str:
    """Changes when any file is added, removed, renamed, resized or touched, or the size."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, str(root.resolve()), size]).encode())
    for split, entries in files.items():
        for path, label in entries:
            st = path.stat()
            # the name as the file system's bytes: one that is not UTF-8 cannot be encoded
            h.update(f"{split}\0".encode() + os.fsencode(path.relative_to(root))
                     + f"\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def decode(entries: list[tuple[Path, int]], size: int, split: str, root: Path
           ) -> dict[str, Any]:
    """{"images": (N, 3, size, size) uint8, "labels", "files"} of the readable files (their
    paths relative to `root`), decoded in threads (Pillow releases the GIL); "errors": the
    unreadable ones as "path: reason" lines."""
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(lambda e: try_load_image(e[0], size), entries, chunksize=64),
                            total=len(entries), desc=f"decoding {split}", unit="img",
                            disable=None, leave=False))
    images = [arr for arr, _ in results if arr is not None]
    labels = [label for (_, label), (arr, _) in zip(entries, results, strict=True)
              if arr is not None]
    errors = [f"{path}: {err}" for (path, _), (_, err) in zip(entries, results, strict=True)
              if err is not None]
    stacked = (torch.from_numpy(np.stack(images)) if images
               else torch.empty(0, 3, size, size, dtype=torch.uint8))
    files = [path.relative_to(root).as_posix() for (path, _), (arr, _) in
             zip(entries, results, strict=True) if arr is not None]
    return {"images": stacked, "labels": torch.tensor(labels, dtype=torch.int64),
            "files": files, "errors": errors}


def _read_cache(path: Path, classes: list[str], splits: list[str]) -> dict | None:
    """The cached decoding, if it is whole and of this folder's classes and splits; else None
    (decoded again): a damaged or foreign cache file is rebuilt, never fatal."""
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - unreadable: rebuilt
        cached = None
        why = type(e).__name__
    else:
        why = "not this folder's decoding"
        try:
            ok = (cached["classes"] == classes and sorted(cached["splits"]) == sorted(splits)
                  and isinstance(cached["errors"], list) and all(
                      isinstance(v["images"], torch.Tensor) and v["images"].dtype == torch.uint8
                      and len(v["images"]) == len(v["labels"]) == len(v["files"])
                      for v in cached["splits"].values()))
        except (KeyError, TypeError, AttributeError):
            ok = False
        if ok:
            return cached
    print(f"cifarlab: ignoring the damaged image cache {path} ({why}); decoding again",
          file=sys.stderr)
    return None


def _write_cache(path: Path, decoded: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with publishing(path) as tmp:
            torch.save(decoded, tmp)
    except (OSError, CifarlabError) as e:  # a read-only home, a full disk: decoded next time
        reason = getattr(e, "strerror", None) or str(e)
        print(f"cifarlab: could not cache the decoded images in {path.parent} ({reason}); "
              f"set CIFARLAB_CACHE_DIR to a writable folder", file=sys.stderr)


def read_folder(root: str | os.PathLike, size: int) -> tuple[list[str], dict]:
    """(classes, {split: (images, labels)}) of the splits present; a line on standard error
    says how they were loaded (decoded or from the cache), how fast, and what was skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} not found; pass --data-dir PATH with "
                        f"PATH/train/CLASS/IMAGE")
    t0 = time.perf_counter()
    classes, files = scan(root)
    path = cache_dir() / "folders" / f"{cache_key(root, files, size)}.pt"
    decoded = _read_cache(path, classes, list(files))
    how = "from the cache"
    if decoded is None:
        decoded = {"classes": classes, "splits": {}, "errors": []}
        for split, entries in files.items():
            decoded["splits"][split] = decode(entries, size, split, root)
            decoded["errors"] += decoded["splits"][split].pop("errors")
        _write_cache(path, decoded)
        how = "decoded"
    errors = decoded["errors"]
    for line in errors[:SHOWN_ERRORS]:
        print(f"cifarlab: skipped unreadable image {line}", file=sys.stderr)
    if len(errors) > SHOWN_ERRORS:
        print(f"cifarlab: ... and {len(errors) - SHOWN_ERRORS} more unreadable images",
              file=sys.stderr)
    splits = {k: (v["images"], v["labels"], v["files"]) for k, v in decoded["splits"].items()}
    if len(splits["train"][1]) == 0:
        raise DataError(f"no readable training images under {root}/train")
    check_classes(root, decoded["classes"], splits["train"][1])
    skipped = f", {len(errors)} unreadable images skipped" if errors else ""
    print(f"cifarlab: image folder {root}: {len(classes)} classes at {size}x{size} px, {how} "
          f"in {time.perf_counter() - t0:.1f} s{skipped}", file=sys.stderr)
    return decoded["classes"], splits


def check_classes(root: Path, classes: list[str], labels: torch.Tensor) -> None:
    """A classifier needs two classes or more, each with readable training images."""
    if len(classes) < 2:
        raise DataError(f"{root}/train holds {len(classes)} class folder(s); a classifier "
                        "needs two or more (PATH/train/CLASS/IMAGE)")
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(f"no readable training image in {root}/train/{empty[0]}"
                        f"{f' (and {len(empty) - 1} more classes)' if len(empty) > 1 else ''}; "
                        "add images, or remove the folder")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (in chunks: no float copy of
    the whole set). A constant channel (std 0) gets std 1/255, one grey level, so that
    normalising it gives zeros, not infinities."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), 4096):
        x = images[start:start + 4096].double() / 255
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
    n = images.numel() / 3
    mean = total / n
    std = (squares / n - mean * mean).clamp(min=0).sqrt()
    for c in (std < 1 / 255).nonzero().flatten().tolist():
        print(f"cifarlab: channel {c} of the training images is constant: it is normalised "
              "with std 1/255", file=sys.stderr)
    std = std.clamp(min=1 / 255)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def load_folder(root: str | os.PathLike, size: int = 32, val_size: int | None = None,
                split_seed: int = 0, exclude: Exclusion | None = None) -> DataSplits:
    """Train/val/test tensors of an image folder. Without val/, a stratified `val_size` images
    of train/ (default: 10%) validate; without test/, the test tensors are empty. `stats` holds
    the training images' own mean and std; `exclude` names training images to leave out."""
    classes, splits = read_folder(root, size)
    x, y, names = splits["train"]
    if "val" in splits:
        vx, vy, vnames = splits["val"]
        train_idx = np.arange(len(y))
    else:
        n_val = round(VAL_SHARE * len(y)) if val_size is None else val_size
        train_idx, val_idx = stratified_split(y.numpy(), n_val, split_seed)
        vx = x[val_idx]
        vy = y[val_idx]
        vnames = [names[i] for i in val_idx]
    train_idx, excluded = without_excluded(exclude, x, y, names, train_idx)
    tx, ty, tnames = splits.get("test", (x[:0], y[:0], []))
    files = {"train": [names[i] for i in train_idx], "val": vnames, "test": tnames}
    x = x[train_idx]
    y = y[train_idx]
    return DataSplits(x, y, vx, vy, tx, ty, list(classes), channel_stats(x), files=files,
                      excluded=excluded)
