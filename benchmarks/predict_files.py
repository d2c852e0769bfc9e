"""How long `cifarlab predict` takes on many image files.

Writes N test images as files (JPEG, upscaled to SIZE×SIZE like small photos, or PNG at 32×32)
into a temporary folder, then times the whole `cifarlab predict RUN FOLDER` command, start-up
included, and prints files per second.

    python benchmarks/predict_files.py runs/readme-report --data-dir PATH -n 10000
    python benchmarks/predict_files.py RUN --data-dir PATH -- --tta none
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from cifarlab.data import load_cifar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run folder or checkpoint to predict with")
    ap.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py")
    ap.add_argument("-n", type=int, default=10000, help="number of files (default: 10000)")
    ap.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    ap.add_argument("--size", type=int, default=128, help="side of the JPEG files (default: 128)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # options for cifarlab predict
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    images = load_cifar("cifar10", args.data_dir, download=False, val_size=0).test_images
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.n):
            img = Image.fromarray(images[i % len(images)].permute(1, 2, 0).numpy())
            if args.format == "jpeg":
                img.resize((args.size, args.size), Image.Resampling.BICUBIC).save(
                    folder / f"{i:06d}.jpg", quality=90)
            else:
                img.save(folder / f"{i:06d}.png")
        exe = [sys.executable, "-m", "cifarlab", "predict", args.run, str(folder), *extra]
        start = time.perf_counter()
        done = subprocess.run(exe, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    lines = done.stdout.count("\n")
    size = f"{args.size}x{args.size}" if args.format == "jpeg" else "32x32"
    print(f"{lines} of {args.n} {args.format} files ({size}) classified in {seconds:.1f} s "
          f"= {lines / seconds:.0f} files/s, exit code {done.returncode}")


if __name__ == "__main__":
    main()
