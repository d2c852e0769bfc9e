"""The teaching write-up's comparisons, reproduced in short runs, then put side by side.

    python experiments/seed_comparisons.py --data-dir PATH

Trains, one after the other, each as its own `cifarlab train` (seed 0, a validation split of
5,000 images that picks the epoch, the test set once at the end):

  1. the beginner's tutorial CNN (`tutorial`),
  2. the seed's ResNet-18 with its augmentation (`seed`: crop, flip, rotation, colour jitter),
  3. the same without any augmentation (the write-up's 76.77% against 83.57% comparison),
  4. fastnet with the speed recipe (`fast`, with the same validation split as the others),

the two ResNet-18 runs with the same short budget (--resnet-epochs, default 3, against the
seed's 208), then writes `cifarlab compare` of the four to OUT/compare.html with its pictures in
OUT/pictures/ and prints a Markdown table. About 15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from cifarlab.runs import RunFolder

NO_AUGMENTATION = ["--crop-padding", "0", "--no-flip", "--rotation", "0",
                   "--color-jitter", "0", "0", "0", "0"]


def runs(resnet_epochs: int, tutorial_epochs: int) -> dict[str, list[str]]:
    short = ["--epochs", str(resnet_epochs)]
    return {
        "tutorial-cnn": ["--preset", "tutorial", "--epochs", str(tutorial_epochs)],
        "resnet18-augmented": ["--preset", "seed", *short],
        "resnet18-plain": ["--preset", "seed", *short, *NO_AUGMENTATION],
        "fastnet": ["--preset", "fast", "--val-size", "5000"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    p.add_argument("--out", type=Path, default=Path("runs/seed-comparisons"))
    p.add_argument("--resnet-epochs", type=int, default=3)
    p.add_argument("--tutorial-epochs", type=int, default=5)
    args = p.parse_args()
    started = time.perf_counter()
    rows, dirs = [], []
    for name, options in runs(args.resnet_epochs, args.tutorial_epochs).items():
        run_dir = args.out / name
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cifarlab", "train", *options, "--seed", "0",
                        "--data-dir", args.data_dir, "--run-dir", str(run_dir), "--no-report"],
                       check=True)
        m = RunFolder(run_dir).metrics()
        worst = min(m["per_class"], key=lambda c: m["per_class"][c])
        rows.append(f"| {name} | {m['epochs']} | {m['test_top1']:.2f}% | {worst} "
                    f"{m['per_class'][worst]:.1f}% | {time.perf_counter() - t0:.0f} s |")
        dirs.append(str(run_dir))
    subprocess.run([sys.executable, "-m", "cifarlab", "compare", *dirs, "-o",
                    str(args.out / "compare.html"), "--pictures", str(args.out / "pictures")],
                   check=True)
    print("\n| run | epochs | test top-1 | worst class | wall time |")
    print("| --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    print(f"\nall of it: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
