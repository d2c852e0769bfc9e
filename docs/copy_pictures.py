"""Copy a run's report pictures into docs/images for the README, reduced to 256 colours.

    python docs/copy_pictures.py runs/readme-report
"""

import sys
from pathlib import Path

from PIL import Image

NAMES = ("curves", "confusion", "per_class", "predictions", "mistakes")

run, out = Path(sys.argv[1]), Path(__file__).parent / "images"
out.mkdir(exist_ok=True)
for name in NAMES:
    with Image.open(run / f"{name}.png") as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)
    small.save(out / f"{name}.png", optimize=True)
    print(f"{out / name}.png  {(out / f'{name}.png').stat().st_size // 1024} KB")
