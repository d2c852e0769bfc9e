"""What the comparator scripts (airbench94_muon.py, hiverge_speedrun.py) share and does not belong
to either recipe: the device and precision choice, reading CIFAR-10's python pickles, the
command line that `cifarlab bench --compare-record` calls them with, and the results file.

A comparator script takes `--seed N --data-dir DIR --out FILE [--compile]` (and, for tests on
small data only, `--batch-size` and `--epochs`) and writes FILE as JSON with `test_top1`,
`epochs`, `train_seconds`, `device`, `precision` and `compile`.
"""

from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


# --- device and precision ------------------------------------------------------------------

def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16() -> bool:
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def pick_dtype(device: torch.device) -> torch.dtype:
    """The records' fp16 on CUDA; on a CPU, bf16 where it is native, else float32."""
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if native_bf16() else torch.float32


def prepare_device(device: torch.device) -> None:
    """As both records do on the GPU: cuDNN picks the fastest kernels for the fixed shapes."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


# --- data ----------------------------------------------------------------------------------

def read_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def normalize(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    x = ((images.float() / 255 - mean) / std).to(dtype)
    return x.contiguous(memory_format=torch.channels_last)


def random_flip(images: torch.Tensor) -> torch.Tensor:
    mask = (torch.rand(len(images), device=images.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mask, images.flip(-1), images)


# --- the command line and the results ------------------------------------------------------

def parse_args(description: str, batch_size: int, epochs: float) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default="data",
                        help="folder holding cifar-10-batches-py/ (default: ./data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"for tests on small data only: the record's is {batch_size}")
    parser.add_argument("--epochs", type=type(epochs), default=epochs,
                        help=f"for tests only: the record's is {epochs}")
    return parser.parse_args()


@dataclass
class Cifar:
    """CIFAR-10 normalised on the device, in the run's precision, channels-last."""
    device: torch.device
    dtype: torch.dtype
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load(args: argparse.Namespace) -> Cifar:
    """Seed torch, pick the device and precision, and load CIFAR-10 (or exit with one line)."""
    folder = Path(args.data_dir) / "cifar-10-batches-py"
    if not (folder / "test_batch").is_file():
        raise SystemExit(f"error: CIFAR-10 not found in {folder}; pass --data-dir")
    torch.manual_seed(args.seed)
    device = pick_device()
    prepare_device(device)
    dtype = pick_dtype(device)
    train_images, train_labels = read_split(folder, train=True)
    test_images, test_labels = read_split(folder, train=False)
    return Cifar(device, dtype, normalize(train_images.to(device), dtype),
                 train_labels.to(device), normalize(test_images.to(device), dtype),
                 test_labels.to(device))


def write_result(args: argparse.Namespace, data: Cifar, acc: float, train_seconds: float,
                 **extra: object) -> None:
    print(f"test accuracy {acc:.2f}%  ({train_seconds:.0f} s training, {data.dtype}, "
          f"{data.device})")
    gpu = (torch.cuda.max_memory_allocated(data.device) / 2**20
           if data.device.type == "cuda" else None)
    if args.out:
        Path(args.out).write_text(json.dumps({"gpu_peak_memory_mb": gpu,
            "test_top1": acc, "epochs": args.epochs, "batch_size": args.batch_size,
            "train_seconds": train_seconds, "device": str(data.device),
            "precision": str(data.dtype).replace("torch.", ""), "compile": args.compile,
            "seed": args.seed, **extra}) + "\n")
