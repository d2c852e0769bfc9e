"""Write a stand-in CIFAR-10 of the real one's shape (50,000 + 10,000 random 32x32 images, ten
balanced classes) in the official python layout, for timing runs on a machine that the real
data cannot reach (a lent GPU machine): its times are real, its accuracies mean nothing.

    python benchmarks/stand_in_cifar.py DATA_DIR [--train 50000 --test 10000 --seed 0]

then `cifarlab train --data-dir DATA_DIR`. The pixels are uniform noise with a per-class mean
colour, so that training does not collapse into a degenerate case.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from cifarlab.data import CIFAR10_CLASSES, DATASETS


def write_stand_in(root: str | Path, train: int = 50_000, test: int = 10_000,
                   seed: int = 0) -> Path:
    """Write the stand-in under root/cifar-10-batches-py; returns that folder."""
    spec = DATASETS["cifar10"]
    rng = np.random.default_rng(seed)
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    files = len(spec.train_files)
    sizes = [train // files + (i < train % files) for i in range(files)]  # near-equal shares
    colours = rng.integers(40, 216, (spec.num_classes, 3, 1), dtype=np.int16)
    for name, n in [*zip(spec.train_files, sizes, strict=True), (spec.test_files[0], test)]:
        labels = np.arange(n) % spec.num_classes
        rng.shuffle(labels)
        noise = rng.integers(-40, 41, (n, 3, 1024), dtype=np.int16)
        pixels = np.clip(colours[labels] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
        batch = {"batch_label": name, spec.label_key: labels.tolist(), "data": pixels,
                 "filenames": [f"stand_in_{name}_{i:05d}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {spec.meta_key: list(CIFAR10_CLASSES)}
    (folder / spec.meta_file).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("--train", type=int, default=50_000)
    p.add_argument("--test", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not 10 <= args.train <= 50_000:  # every class in each file, at most the real size
        p.error("--train must be between 10 and 50,000 images")
    folder = write_stand_in(args.data_dir, args.train, args.test, args.seed)
    print(f"stand-in CIFAR-10 ({args.train} + {args.test} random images) in {folder}")


if __name__ == "__main__":
    main()
