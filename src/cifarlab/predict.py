"""Classify your own image files with a trained run.

Policy: each image is decoded by Pillow (first frame of an animation, EXIF rotation applied),
transparent pixels are composited onto white, the result converted to RGB, center-cropped to a
square, resized to the run's image size (32×32 for CIFAR) with Pillow's antialiased bicubic
filter, then scaled to [0, 1] and normalised with the checkpoint's mean and std, as in training.
Files are decoded in threads and classified in batches; a file that cannot be read yields an
error entry, never stops the batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarlab.inference import load_model, predict_logits
from cifarlab.runtime import resolve_device


def image_extensions() -> set[str]:
    """Every extension Pillow can open (.png, .jpg, .jpeg, .webp, .bmp, .gif, .tif, ...)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[tuple[str, str | None]]:
    """(path, error) pairs: folders become the image files inside them (recursively, sorted);
    a folder without images is an error entry of its own. Named files are kept as given."""
    exts = image_extensions()
    out: list[tuple[str, str | None]] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            out.append((str(raw), None))
            continue
        found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        out.extend((f, None) for f in found)
        if not found:
            out.append((str(raw), "folder holds no image files"))
    return out


def load_image(path: str | os.PathLike, size: int = 32) -> np.ndarray:
    """A file as a (3, size, size) uint8 array, following the policy above. Raises ValueError
    with a short reason for anything that is not a readable image."""
    p = Path(path)
    if not p.exists():
        raise ValueError("no such file")
    if p.is_dir():
        raise ValueError("is a folder")
    if p.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with Image.open(p) as img:
            img.seek(0)
            img.draft("RGB", (4 * size, 4 * size))  # JPEG: decode big photos at 1/2..1/8 scale
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"refused: {e}") from None
    except (OSError, SyntaxError, EOFError) as e:  # truncated or corrupt data
        raise ValueError(f"cannot decode image ({e})") from None
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    small = square.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1).copy()


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; images with transparency (RGBA, LA, palette with a transparent colour) on white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit/float grayscale
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.max() > 255 else 255.0
        return Image.fromarray((arr / hi * 255).round().astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _load(path: str, size: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return load_image(path, size), None
    except ValueError as e:
        return None, str(e)


def predict_files(checkpoint: str | os.PathLike, paths: Iterable[str | os.PathLike],
                  topk: int = 5, batch_size: int = 256, device: str = "auto",
                  tta: str | None = None, workers: int | None = None
                  ) -> Iterator[dict[str, Any]]:
    """Yield, in input order, {"file", "top": [{"class", "probability"}, ...]} for each image,
    or {"file", "error"} for each file that could not be read."""
    model = load_model(checkpoint, resolve_device(device), tta, as_trained=True)
    classes = model.classes
    k = max(1, min(topk, len(classes)))
    entries = expand_inputs(paths)
    chunks = [entries[i:i + batch_size] for i in range(0, len(entries), batch_size)]
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        def decode(chunk: list[tuple[str, str | None]]) -> list:
            return [pool.submit(_load, path, model.image_size) if error is None else None
                    for path, error in chunk]

        # Decode the next chunk in the threads while the model classifies this one.
        pending = decode(chunks[0]) if chunks else []
        for n, chunk in enumerate(chunks):
            futures, pending = pending, decode(chunks[n + 1]) if n + 1 < len(chunks) else []
            results, good, arrays = [], [], []
            for (path, error), fut in zip(chunk, futures, strict=True):
                arr, error = fut.result() if fut is not None else (None, error)
                results.append({"file": path, "error": error} if error else {"file": path})
                if arr is not None:
                    good.append(results[-1])
                    arrays.append(arr)
            if arrays:
                logits = predict_logits(model, torch.from_numpy(np.stack(arrays)), batch_size)
                probs, idx = torch.softmax(logits, 1).topk(k, dim=1)
                for r, p, i in zip(good, probs.tolist(), idx.tolist(), strict=True):
                    r["top"] = [{"class": classes[c], "probability": q}
                                for c, q in zip(i, p, strict=True)]
            yield from results


def format_prediction(result: dict[str, Any]) -> str:
    return result["file"] + "  " + "  ".join(
        f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"])
