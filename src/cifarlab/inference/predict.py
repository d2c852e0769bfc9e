"""Classify your own image files with a trained run.

Each image is read as `cifarlab.data.image_files` reads every image (EXIF rotation, alpha on white,
centre crop), resized to the run's image size (32×32 for CIFAR), then scaled to [0, 1] and
normalised with the checkpoint's mean and std, as in training. Files are decoded in threads
and classified in batches; a file that cannot be read yields an error entry, never stops the
batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab.data.image_files import image_extensions, try_load_image
from cifarlab.inference.loading import load_model
from cifarlab.models import Classifier, predict_logits
from cifarlab.runtime import resolve_device


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


def load_predictor(checkpoint: str | os.PathLike, device: str = "auto",
                   tta: str | None = None) -> Classifier:
    """The model as `predict` uses it. Every image gets all the views: a file's prediction
    must not depend on its batch-mates."""
    return load_model(checkpoint, resolve_device(device), tta=tta, as_trained=True,
                      tta_share=1.0)


def predict_files(checkpoint: str | os.PathLike, paths: Iterable[str | os.PathLike], *,
                  topk: int = 5, batch_size: int = 256, device: str = "auto",
                  tta: str | None = None, workers: int | None = None
                  ) -> Iterator[dict[str, Any]]:
    """Yield, in input order, {"file", "top": [{"class", "probability"}, ...]} for each image,
    or {"file", "error"} for each file that could not be read."""
    model = load_predictor(checkpoint, device, tta)
    yield from classify_files(model, paths, topk=topk, batch_size=batch_size, workers=workers)


def classify_files(model: Classifier, paths: Iterable[str | os.PathLike], *, topk: int = 5,
                   batch_size: int = 256, workers: int | None = None, keep_pixels: bool = False
                   ) -> Iterator[dict[str, Any]]:
    """`predict_files` with a loaded model (`load_predictor`); `keep_pixels` adds each image
    as the network sees it ("pixels": uint8, (3, S, S))."""
    classes = model.classes
    k = max(1, min(topk, len(classes)))
    entries = expand_inputs(paths)
    chunks = [entries[i:i + batch_size] for i in range(0, len(entries), batch_size)]
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        def decode(chunk: list[tuple[str, str | None]]) -> list:
            return [pool.submit(try_load_image, path, model.image_size) if error is None else None
                    for path, error in chunk]

        # Decode the next chunk in the threads while the model classifies this one.
        pending = decode(chunks[0]) if chunks else []
        for n, chunk in enumerate(chunks):
            futures = pending
            pending = decode(chunks[n + 1]) if n + 1 < len(chunks) else []
            results = []
            good = []
            arrays = []
            for (path, error), fut in zip(chunk, futures, strict=True):
                arr, error = fut.result() if fut is not None else (None, error)
                results.append({"file": path, "error": error} if error else {"file": path})
                if arr is not None:
                    good.append(results[-1])
                    arrays.append(arr)
                    if keep_pixels:
                        results[-1]["pixels"] = arr
            if arrays:
                logits = predict_logits(model, torch.from_numpy(np.stack(arrays)), batch_size)
                probs, idx = torch.softmax(logits, 1).topk(k, dim=1)
                for r, p, i in zip(good, probs.tolist(), idx.tolist(), strict=True):
                    r["top"] = [{"class": classes[c], "probability": q}
                                for c, q in zip(i, p, strict=True)]
            yield from results


def format_prediction(result: dict[str, Any]) -> str:
    return result["file"] + "  " + "  ".join(
        f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"]) + (
        f"  heatmap {result['heatmap']}" if "heatmap" in result else "")
