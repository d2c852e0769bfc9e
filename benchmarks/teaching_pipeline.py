"""Time the teaching script's own training pipeline, for comparison with `--preset seed`.

torchvision's CIFAR10 dataset with per-image PIL transforms (RandomCrop 32/4, flip, rotation 10,
ColorJitter 0.2 x4, ToTensor, Normalize 0.5), a DataLoader with 2 workers, batch 128, and
torchvision's resnet18(weights=None, num_classes=10) with SGD 0.01 / 0.9 / 5e-4, as the script
had. It times BATCHES batches after a short warm-up and prints the seconds per epoch that gives
(391 batches of 128 for the 50,000 images the script trained on), and the data loading alone.

    python benchmarks/teaching_pipeline.py --data-dir PATH --batches 40
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader


class LocalCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 without its per-file MD5 checks (a re-packed copy has other bytes)."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        from cifarlab.data.cifar import class_names, find_dataset

        self.classes = class_names(find_dataset("cifar10", self.root, False), "cifar10")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py/")
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()

    transform = T.Compose([
        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(10),
        T.ColorJitter(0.2, 0.2, 0.2, 0.2), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    data = LocalCIFAR10(args.data_dir, train=True, transform=transform, download=False)
    loader = DataLoader(data, batch_size=128, shuffle=True, num_workers=2)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    per_epoch = len(loader)

    def timed(train: bool) -> float:
        it = iter(loader)
        for i in range(args.warmup + args.batches):
            if i == args.warmup:
                start = time.perf_counter()
            x, y = next(it)
            if train:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return (time.perf_counter() - start) / args.batches

    step = timed(train=True)
    load = timed(train=False)
    print(f"teaching pipeline: {step:.3f} s/batch -> {step * per_epoch:.0f} s/epoch "
          f"({per_epoch} batches); data loading alone {load * per_epoch:.0f} s/epoch; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
