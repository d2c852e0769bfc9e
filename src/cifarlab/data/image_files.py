"""Image files, read as every cifarlab command reads them (predict, image-folder datasets).

Policy: each image is decoded by Pillow (first frame of an animation, EXIF rotation applied),
transparent pixels are composited onto white, 16-bit and float greyscale scaled to 8 bits, the
result converted to RGB, center-cropped to a square and resized to the size asked for with
Pillow's antialiased bicubic filter: a (3, size, size) uint8 array. Images of over 16 MP are
first box-reduced by a whole factor, so that no conversion copies them whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarlab.errors import first_line

MAX_PIXELS = 64_000_000  # decoded whole (not JPEG): 64 MP is ~200 MB of RGB


def image_extensions() -> set[str]:
    """Every extension Pillow can open (.png, .jpg, .jpeg, .webp, .bmp, .gif, .tif, ...)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


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
            if img.format != "JPEG" and img.width * img.height > MAX_PIXELS:  # JPEG: draft
                raise ValueError(f"refused: {img.width}x{img.height} pixels is more than "
                                 f"{MAX_PIXELS // 10**6} million (a decompression bomb?)")
            img.seek(0)
            img.draft("RGB", (4 * size, 4 * size))  # JPEG: decode big photos at 1/2..1/8 scale
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # no copy of an upright image
            img = _to_rgb(_reduced(img, size))
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"refused: {e}") from None
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, or a codec Pillow lacks
        # (OSError, SyntaxError, EOFError, NotImplementedError for DDS's unknown flags, ...)
        first = first_line(e)
        raise ValueError(f"cannot decode image ({first})") from None
    w, h = img.size
    side = min(w, h)
    left = (w - side) // 2
    top = (h - side) // 2
    square = img.crop((left, top, left + side, top + side))
    small = square.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1).copy()


REDUCE_PIXELS = 16_000_000  # above this, an image is reduced first (a whole RGB copy: 48 MB)
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")  # modes Pillow's box reduction takes
BAND = 256  # rows of a palette or 1-bit image converted at a time


def _reduced(img: Image.Image, size: int) -> Image.Image:
    """An image of over REDUCE_PIXELS, box-averaged down by a whole factor to 4x to 8x the
    asked size before any conversion: mode changes and compositing copy an image whole (a
    64 MP palette PNG of a few KB is 256 MB as RGBA). Palette and 1-bit images are converted
    band by band as they are reduced."""
    factor = min(img.size) // (4 * size)
    if img.width * img.height <= REDUCE_PIXELS or factor < 2:
        return img
    if img.mode in REDUCIBLE:
        return img.reduce(factor)
    if img.mode not in ("1", "P"):
        return img  # rare modes (CMYK, YCbCr, 16-bit): whole, as before
    target = "RGBA" if img.mode == "P" and "transparency" in img.info else (
        "RGB" if img.mode == "P" else "L")
    band = BAND // factor * factor or factor
    w, h = img.size
    out = Image.new(target, (w // factor, h // factor))
    for top in range(0, h // factor * factor, band):
        part = img.crop((0, top, w, min(top + band, h // factor * factor)))
        out.paste(part.convert(target).reduce(factor), (0, top // factor))
    return out


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


def try_load_image(path: str | os.PathLike, size: int = 32
                   ) -> tuple[np.ndarray | None, str | None]:
    """(image, None), or (None, the reason it cannot be read): for callers that go on."""
    try:
        return load_image(path, size), None
    except ValueError as e:
        return None, str(e)
