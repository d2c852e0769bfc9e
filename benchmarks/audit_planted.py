"""How well `cifarlab audit` finds problems that are known: plant them, audit, count.

Into the real CIFAR-10 (or any CIFAR-layout data), plant two kinds of known problems:
- wrong labels: a share of the training images gets another class, chosen at random;
- leakage: some training images are replaced by altered copies of test images (shifted two
  pixels, rescaled by 1.15, JPEG-recompressed at quality 60, or recoloured).
Then audit the planted copy and measure recall (planted problems found) and precision
(findings that are planted; CIFAR-10's own wrong labels and copies count against it, so this
is a lower bound), also among the top-ranked label findings (as many as were planted).

    python benchmarks/audit_planted.py --data-dir PATH [--folds 4] [--out FILE.json]

The planting functions are also what tests/test_audit.py plants into synthetic data.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ALTERATIONS = ("shift", "rescale", "jpeg", "recolour")


def alter(image: np.ndarray, how: str) -> np.ndarray:
    """An altered copy of a uint8 (3, H, W) image."""
    x = torch.from_numpy(image).float()[None]
    h, w = image.shape[1:]
    if how == "shift":
        x = F.pad(x, (2, 0, 2, 0), mode="reflect")[:, :, :h, :w]
    elif how == "rescale":
        big = F.interpolate(x, scale_factor=1.15, mode="bilinear", align_corners=False)
        top, left = (big.shape[2] - h) // 2, (big.shape[3] - w) // 2
        x = big[:, :, top:top + h, left:left + w]
    elif how == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(image.transpose(1, 2, 0)).save(buf, "JPEG", quality=60)
        x = torch.from_numpy(np.asarray(Image.open(buf)).transpose(2, 0, 1).copy()).float()[None]
    elif how == "recolour":
        x = (x - x.mean()) * 1.2 + x.mean() * 0.9 + torch.tensor([12.0, 0.0, -12.0]).view(3, 1, 1)
    return x[0].clamp(0, 255).round().to(torch.uint8).numpy()


def plant(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, flip_share: float,
          copies: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(training images, labels, what was planted): `flip_share` of the labels changed, and
    `copies` training images replaced by altered test images (never a flipped one)."""
    rng = np.random.default_rng(seed)
    x, y = train_x.copy(), train_y.copy()
    order = rng.permutation(len(y))
    flipped = np.sort(order[:round(flip_share * len(y))])
    y[flipped] = (y[flipped] + rng.integers(1, classes, len(flipped))) % classes
    slots = order[len(flipped):len(flipped) + copies]
    sources = rng.choice(len(test_x), copies, replace=False)
    planted = []
    for n, (slot, source) in enumerate(zip(slots, sources, strict=True)):
        how = ALTERATIONS[n % len(ALTERATIONS)]
        x[slot] = alter(test_x[source], how)
        planted.append({"train": int(slot), "test": int(source), "how": how})
    return x, y, {"flipped": flipped.tolist(), "copies": planted}


def score(record: dict, planted: dict) -> dict:
    """Recall and precision of the audit's label and leakage findings against the planted."""
    ranked = [f["index"] for f in record["findings"] if f["kind"] == "label"
              and f["split"] == "train"]  # most likely wrong first
    labels, flipped = set(ranked), set(planted["flipped"])
    top = set(ranked[:len(flipped)])
    leaks = {(f["partner"]["index"], f["index"]) for f in record["findings"]
             if f["kind"] == "leakage" and f["split"] == "test"
             and f["partner"]["split"] == "train"}
    copies = {(c["train"], c["test"]) for c in planted["copies"]}
    by_how = {how: sum((c["train"], c["test"]) in leaks for c in planted["copies"]
                       if c["how"] == how) / max(1, sum(c["how"] == how for c in planted["copies"]))
              for how in ALTERATIONS}
    return {"label_recall": len(labels & flipped) / max(1, len(flipped)),
            "label_precision": len(labels & flipped) / max(1, len(labels)),
            "label_precision_top": len(top & flipped) / max(1, len(top)),
            "label_flagged": len(labels),
            "leakage_recall": len(leaks & copies) / max(1, len(copies)),
            "leakage_recall_by_alteration": by_how, "leakage_flagged": len(leaks)}


def write_cifar(folder: Path, x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray,
                classes: list[str]) -> None:
    """CIFAR-10's python layout: five training batches, the test batch, the meta file."""
    folder.mkdir(parents=True)
    for n, part in enumerate(np.array_split(np.arange(len(y)), 5), 1):
        batch = {"labels": y[part].tolist(), "data": x[part].reshape(len(part), -1)}
        (folder / f"data_batch_{n}").write_bytes(pickle.dumps(batch, protocol=4))
    test = {"labels": ty.tolist(), "data": tx.reshape(len(ty), -1)}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=4))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}, protocol=4))


def main() -> None:
    from cifarlab.data import load_cifar
    from cifarlab.jobs.audit import audit

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--epochs", type=int)
    p.add_argument("--flip-share", type=float, default=0.02)
    p.add_argument("--copies", type=int, default=200)
    p.add_argument("--out", default="benchmarks/audit-planted.json")
    args = p.parse_args()
    data = load_cifar("cifar10", args.data_dir, download=False, val_size=0)
    x, y, planted = plant(data.train_images.numpy(), data.train_labels.numpy(),
                          data.test_images.numpy(), flip_share=args.flip_share,
                          copies=args.copies, classes=len(data.classes))
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar(Path(tmp) / "cifar-10-batches-py", x, y, data.test_images.numpy(),
                    data.test_labels.numpy(), data.classes)
        t0 = time.time()
        extra = {"epochs": args.epochs} if args.epochs else {}
        record = audit(tmp, out=Path(tmp) / "audit", folds=args.folds, download=False, **extra)
        seconds = time.time() - t0
    result = {"folds": args.folds, "epochs": args.epochs, "flip_share": args.flip_share,
              "copies": args.copies, "seconds": round(seconds, 1), "machine": record["machine"],
              "cpu": platform.processor() or platform.machine(),
              "fold_accuracy": record["fold_accuracy"], "summary": record["summary"],
              **score(record, planted)}
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    out.write_text(json.dumps({"runs": runs + [result]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
