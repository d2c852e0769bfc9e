"""CIFAR-10/100: find or download the official python layout, parse it, split off validation.

The whole dataset is small (150 MB as uint8), so it is kept as tensors, on the training device,
and batches are cut from it by indexing: no Dataset/DataLoader, no per-image work.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cifarlab.data.download import download, safe_extract
from cifarlab.data.exclusion import Exclusion, without_excluded
from cifarlab.data.splits import DataSplits, Stats, stratified_split
from cifarlab.errors import DataError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # what the official tarball extracts to
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    meta_key: str  # class names in the meta file
    label_key: str  # labels in each batch file
    num_classes: int
    stats: Stats  # the training images' per-channel mean and std


DATASETS = {
    "cifar10": DatasetSpec(
        "cifar10", "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        "batches.meta", "label_names", "labels", 10,
        ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
    "cifar100": DatasetSpec(
        "cifar100", "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",), ("test",), "meta", "fine_label_names", "fine_labels", 100,
        ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))),
}

VAL_SIZE = 5000  # CIFAR's validation split when a run names none

# CIFAR-10's class names, in label order, as its meta file gives them (for writing data in its
# layout: stand-ins and test fixtures).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def default_data_dir() -> Path:
    """Where CIFAR is looked for (and downloaded to) when no folder is given:
    $CIFARLAB_DATA_DIR, else ./data."""
    return Path(os.environ.get("CIFARLAB_DATA_DIR") or "data")


class _CifarUnpickler(pickle.Unpickler):
    """Loads the CIFAR batch format and refuses anything that would call other code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """One pickled batch file as a dict with str keys."""
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(io.BufferedReader(f), encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing: the dataset folder is incomplete. Delete "
                        f"{path.parent} and run again to download a fresh copy") from None
    except Exception as e:  # truncated, corrupt, or hostile pickle
        raise DataError(f"{path} is not a readable CIFAR batch file ({e}). Delete {path.parent} "
                        "and run again to download a fresh copy") from None


def _parse(path: Path, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    if not isinstance(batch, dict) or "data" not in batch or spec.label_key not in batch:
        raise DataError(f"{path} lacks the 'data' and '{spec.label_key}' entries of a "
                        f"{spec.name} batch file; is this the right dataset?")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[spec.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected uint8 rows of 3072 pixels, got {data.dtype} "
                        f"{data.shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{path}: labels outside 0..{spec.num_classes - 1}; is this "
                        f"{spec.name}?")
    return data.reshape(-1, 3, 32, 32), labels


def find_dataset(dataset: str = "cifar10", data_dir: str | os.PathLike | None = None,
                 download_missing: bool = True) -> Path:
    """The folder holding the batch files: DATA_DIR/<official folder>, or DATA_DIR itself."""
    spec = DATASETS[dataset]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    for candidate in (root / spec.folder, root):
        if (candidate / spec.meta_file).is_file():
            return candidate
    if not download_missing:
        raise DataError(f"{spec.name} not found under {root} (looked for {root / spec.folder}); "
                        "pass --data-dir to where it is, or allow --download")
    mirror = os.environ.get("CIFARLAB_MIRROR")
    url = mirror.rstrip("/") + "/" + spec.url.rsplit("/", 1)[1] if mirror else spec.url
    archive = root / url.rsplit("/", 1)[1]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create data folder {root} ({e.strerror}); pass --data-dir "
                        "to a writable folder") from None
    if not os.access(root, os.W_OK):
        raise DataError(f"data folder {root} is not writable and holds no {spec.name}; pass "
                        "--data-dir to a writable folder or to an existing copy")
    if not archive.is_file():
        download(url, archive, spec.md5)
    safe_extract(archive, root)
    if not (root / spec.folder / spec.meta_file).is_file():
        raise DataError(f"{archive} did not contain {spec.folder}/{spec.meta_file}; delete it "
                        "and run again")
    archive.unlink()  # the extracted folder is what we keep; 170 MB less on disk
    return root / spec.folder


def load_split(folder: Path, dataset: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of the official train or test split."""
    spec = DATASETS[dataset]
    parts = [_parse(folder / name, spec) for name in (spec.train_files if train
                                                      else spec.test_files)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def class_names(folder: Path, dataset: str) -> list[str]:
    spec = DATASETS[dataset]
    meta = read_batch(folder / spec.meta_file)
    names = meta.get(spec.meta_key) if isinstance(meta, dict) else None
    if not names or len(names) != spec.num_classes:
        raise DataError(f"{folder / spec.meta_file} lacks {spec.num_classes} class names")
    return [str(n) for n in names]


def load_cifar(dataset: str = "cifar10", data_dir: str | os.PathLike | None = None,
               download: bool = True, val_size: int | None = VAL_SIZE, split_seed: int = 0,
               exclude: Exclusion | None = None) -> DataSplits:
    """Find (or download) the dataset and return train/val/test tensors on the CPU
    (`val_size` None: VAL_SIZE); `exclude` names training images to leave out."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    folder = find_dataset(dataset, data_dir, download)
    x, y = load_split(folder, dataset, train=True)
    tx, ty = load_split(folder, dataset, train=False)
    t = torch.from_numpy
    train_idx, val_idx = stratified_split(y, VAL_SIZE if val_size is None else val_size,
                                          split_seed)
    train_idx, excluded = without_excluded(exclude, t(x), t(y), None, train_idx)
    return DataSplits(t(x[train_idx]), t(y[train_idx]), t(x[val_idx]), t(y[val_idx]),
                      t(tx), t(ty), class_names(folder, dataset), DATASETS[dataset].stats,
                      excluded=excluded)
