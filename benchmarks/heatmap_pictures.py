"""The audit guide's picture of heatmaps: a trained run's predictions on docs/examples' test
photos, each with its Grad-CAM heatmap over it (what `cifarlab predict RUN --explain DIR`
writes), side by side in docs/images/heatmaps.png.

    python benchmarks/heatmap_pictures.py RUN
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from cifarlab.inference.heatmaps import explain_results
from cifarlab.inference.predict import classify_files, load_predictor

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    model = load_predictor(sys.argv[1], "cpu")
    photos = sorted((ROOT / "docs" / "examples").glob("*.jpg"))
    results = list(classify_files(model, photos, keep_pixels=True))
    with tempfile.TemporaryDirectory() as tmp:
        layer = explain_results(model, results, Path(tmp))
        fig = Figure(figsize=(2.2 * len(results), 2.6))
        axes = fig.subplots(1, len(results), squeeze=False)[0]
        for ax, r in zip(axes, results, strict=True):
            ax.imshow(Image.open(r["heatmap"]))
            top = r["top"][0]
            ax.set_title(f"{Path(r['file']).stem}\n{top['class']} "
                         f"{100 * top['probability']:.0f}%", fontsize=9)
            ax.set_axis_off()
        fig.suptitle(f"Grad-CAM of layer {layer}, predicted class", fontsize=10)
        fig.savefig(ROOT / "docs" / "images" / "heatmaps.png", dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
