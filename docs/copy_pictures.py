"""Copy pictures into docs/images for the README, reduced to 256 colours.

    python docs/copy_pictures.py runs/readme-report                      # a run's report
    python docs/copy_pictures.py runs/seed-comparisons/pictures compare_  # compare's, prefixed
"""

import sys
from pathlib import Path

from PIL import Image

folder, out = Path(sys.argv[1]), Path(__file__).parent / "images"
prefix = sys.argv[2] if len(sys.argv) > 2 else ""
out.mkdir(exist_ok=True)
for name in sorted(p.stem for p in folder.glob("*.png")):
    with Image.open(folder / f"{name}.png") as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)
    target = out / f"{prefix}{name}.png"
    small.save(target, optimize=True)
    print(f"{target}  {target.stat().st_size // 1024} KB")
