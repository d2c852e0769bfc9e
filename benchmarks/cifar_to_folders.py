"""Write CIFAR-10 (or CIFAR-100) as an image folder, to train on it as on your own images.

    python benchmarks/cifar_to_folders.py --data-dir PATH --out /tmp/cifar10-png
    cifarlab train --dataset folder --data-dir /tmp/cifar10-png --seed 0

Layout: OUT/train/CLASS/NNNNN.png and OUT/test/CLASS/NNNNN.png (torchvision's ImageFolder),
lossless, so the folder run sees the same pixels as the pickle run; only their order differs
(files are read class by class), and with it the batches and any validation split.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from cifarlab.data import load_cifar


def write_split(images, labels, classes: list[str], out: Path) -> int:
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    arrays = images.permute(0, 2, 3, 1).numpy()

    def save(i: int) -> None:
        Image.fromarray(arrays[i]).save(out / classes[int(labels[i])] / f"{i:05d}.png")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(len(arrays))))
    return len(arrays)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    p.add_argument("--out", required=True, type=Path, help="the image folder to write")
    args = p.parse_args()
    t0 = time.perf_counter()
    data = load_cifar(args.dataset, args.data_dir, download=False, val_size=0)
    n = write_split(data.train_images, data.train_labels, data.classes, args.out / "train")
    n += write_split(data.test_images, data.test_labels, data.classes, args.out / "test")
    print(f"wrote {n} PNG files under {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
