"""The dataset a run names, loaded: CIFAR-10/100 (cifar.py) or a folder of your own images
(folders.py), as one `DataSplits` of uint8 tensors."""

from __future__ import annotations

import os

from cifarlab.data.cifar import DATASETS, load_cifar
from cifarlab.data.exclusion import Exclusion
from cifarlab.data.folders import load_folder
from cifarlab.data.splits import DataSplits
from cifarlab.errors import DataError

DATASET_CHOICES = (*DATASETS, "folder")


def load_data(dataset: str, data_dir: str | os.PathLike | None, *, download: bool = True,
              val_size: int | None = None, split_seed: int = 0, image_size: int = 32,
              exclude: Exclusion | None = None) -> DataSplits:
    """Train/val/test tensors on the CPU. CIFAR is stored at 32 px (the network's size is
    reached on the device); an image folder is decoded at `image_size`. `exclude`: training
    images to leave out (the validation split is drawn first, and stays the same)."""
    if dataset == "folder":
        if data_dir is None:
            raise DataError("--dataset folder needs --data-dir PATH, with PATH/train/CLASS/IMAGE")
        return load_folder(data_dir, image_size, val_size, split_seed, exclude)
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of "
                        f"{', '.join(DATASET_CHOICES)}")
    return load_cifar(dataset, data_dir, download, val_size, split_seed, exclude)
