"""A trained run evaluated on a split of its dataset: its logits, then the metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.data import DataSplits
from cifarlab.data.exclusion import evaluation_exclusions
from cifarlab.data.splits import changed_splits
from cifarlab.errors import CifarlabError
from cifarlab.inference.loading import load_model
from cifarlab.metrics import calibrated_metrics
from cifarlab.models import predict_logits
from cifarlab.runs import RunFolder
from cifarlab.runs.run_data import load_data_for
from cifarlab.runtime import eval_batch_size, keep_freed_memory, resolve_device


def predict_split(checkpoint: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                  split: str = "test", batch_size: int | None = None, device: str = "auto",
                  download: bool = True, tta: str | None = None,
                  tta_share: float | None = None, calibrated: bool = True,
                  other_data: bool = False) -> dict[str, Any]:
    """A checkpoint's logits on the test (or validation) images, with the images, labels,
    classes, the classifier and the split used: an image folder without test/ gives its
    validation split. Test-time augmentation, precision and batch size default to the run's
    own; `calibrated` divides by the run's fitted temperature, if any. Data with other
    classes is refused, and images other than those the run recorded for the split unless
    `other_data`."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    model = load_model(checkpoint, dev, tta=tta, as_trained=True, tta_share=tta_share,
                       calibrated=calibrated)
    cfg = model.config
    data = load_data_for(cfg, data_dir, download=download)
    if split == "test":
        split = data.evaluation_split
    check_same_data(checkpoint, data, split, other_data, model.classes)
    images, labels = data.split(split)
    if not len(labels):  # a score of no images is no score
        other = "the test split" if data.has_test else "another data folder"
        raise CifarlabError(f"the run has no {split} split here (it holds no images); "
                            f"evaluate {other} instead")
    logits = predict_logits(model, images, batch_size or eval_batch_size(cfg.eval_batch_size,
                                                                         dev))
    return dict(images=images, labels=labels, logits=logits.cpu(), classes=model.classes,
                model=model,
                tta=model.tta, device=str(dev), split=split, temperature=model.temperature,
                files=data.files[split] if data.files else None)


def check_same_data(checkpoint: str | os.PathLike, data: DataSplits, split: str,
                    other_data: bool, classes: list[str]) -> None:
    """The model's classes, in its order; and, for a run folder that recorded its data, the
    same images in `split` (an image folder's validation split drawn again from a train/ that
    has changed would score images the run trained on)."""
    if data.classes != classes:
        missing = [c for c in classes if c not in data.classes]
        extra = [c for c in data.classes if c not in classes]
        said = "; ".join(f"{what}: {', '.join(names[:4])}" for what, names in
                         (("missing", missing), ("not the run's", extra)) if names)
        said = said or "the same ones in another order"
        raise CifarlabError(f"the data has other classes than the model's ({said}); evaluate "
                            f"on data with the model's {len(classes)} classes, in their order")
    path = Path(checkpoint)
    folder = RunFolder(path if path.is_dir() else path.parent)
    recorded = folder.data_record() if RunFolder.holds_run(folder.path) else None
    changed = recorded and changed_splits(recorded, data.fingerprint((split,)), (split,))
    if changed and not other_data:
        raise CifarlabError(f"these are not the images {folder.path} recorded for its {split} "
                            f"split ({changed}); to score it on them anyway, add --other-data")


def evaluate(checkpoint: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
             split: str = "test", batch_size: int | None = None, device: str = "auto",
             download: bool = True, tta: str | None = None,
             tta_share: float | None = None, other_data: bool = False,
             exclude: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate a run folder or checkpoint on the test set (or `split="val"`, as in training).
    Test-time augmentation, precision and batch size default to the run's own settings.
    `exclude` (an audit's JSON or a list of images) adds `without`: the top-1 accuracy with the
    leaked, the mislabeled or the listed images left out."""
    p = predict_split(checkpoint, data_dir=data_dir, split=split, batch_size=batch_size,
                      device=device, download=download, tta=tta, tta_share=tta_share,
                      other_data=other_data)
    t = p["temperature"]
    plain = p["logits"] if t is None else p["logits"] * t
    metrics = calibrated_metrics(plain, p["labels"], p["classes"], t, "run")
    metrics.update(split=p["split"], checkpoint=str(checkpoint), device=p["device"],
                   tta=p["tta"], temperature=p["temperature"])
    if exclude is not None:
        metrics["without"] = scores_without(p, exclude)
    return metrics


def scores_without(p: dict[str, Any], exclude: str | os.PathLike) -> dict[str, Any]:
    """{reason: {"left_out", "images", "top1"}}: the split's top-1 accuracy without the
    images `exclude` names for each reason."""
    left_out = evaluation_exclusions(exclude, p["split"], p["images"], p["labels"], p["files"])
    right = (p["logits"].argmax(1) == p["labels"]).numpy()
    scores = {}
    for reason, indices in left_out.items():
        keep = np.ones(len(right), dtype=bool)
        keep[indices] = False
        scores[reason] = {"left_out": int((~keep).sum()), "images": int(keep.sum()),
                          "top1": round(float(right[keep].mean() * 100), 4) if keep.any()
                          else None}
    return scores
