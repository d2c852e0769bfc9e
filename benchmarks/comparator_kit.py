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
import torch.nn.functional as F
from torch import nn

from cifarlab.runtime import cpu_has_native_bf16

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


# --- device and precision ------------------------------------------------------------------

def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """The records' fp16 on CUDA; on a CPU, bf16 where it is native, else float32."""
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


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


# --- airbench94's network, which both records train ------------------------------------------

def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding="same", bias=False)
    nn.init.dirac_(conv.weight.data[:c_in])  # identity on the first c_in filters
    return conv


def batch_norm(c: int, momentum: float) -> nn.BatchNorm2d:
    """BN with eps 1e-12 and its scale frozen; `momentum` in airbench's convention."""
    bn = nn.BatchNorm2d(c, eps=1e-12, momentum=1 - momentum)
    bn.weight.requires_grad_(False)
    return bn


def conv_group(c_in: int, c_out: int, momentum: float, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(conv3x3(c_in, c_out), nn.MaxPool2d(2), batch_norm(c_out, momentum),
                         act(), conv3x3(c_out, c_out), batch_norm(c_out, momentum), act())


class AirbenchNet(nn.Module):
    """2x2 whitening conv (24 frozen filters, trained bias), GELU, three conv groups, maxpool 3,
    a bias-free head rescaled to std 1, logits / width. The records differ in the groups' BN
    momentum and activation, and in how the whitening is initialised (`init_whiten`)."""

    def __init__(self, widths: tuple[int, int, int], bn_momentum: float,
                 activation: type[nn.Module]):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        c1, c2, c3 = widths
        self.layers = nn.Sequential(nn.GELU(), conv_group(24, c1, bn_momentum, activation),
                                    conv_group(c1, c2, bn_momentum, activation),
                                    conv_group(c2, c3, bn_momentum, activation),
                                    nn.MaxPool2d(3))
        self.head = nn.Linear(widths[2], 10, bias=False)
        with torch.no_grad():
            self.head.weight /= self.head.weight.std()

    def forward(self, x: torch.Tensor, whiten_bias_grad: bool = True) -> torch.Tensor:
        bias = self.whiten.bias if whiten_bias_grad else self.whiten.bias.detach()
        x = self.layers(F.conv2d(x, self.whiten.weight, bias)).flatten(1)
        return self.head(x) / x.size(-1)


def patch_moment(images: torch.Tensor) -> torch.Tensor:
    """The uncentred second moment of the images' 2x2 patches (C*4 x C*4, float32)."""
    c = images.size(1)
    patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4)
    return patches.T @ patches / len(patches)


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
