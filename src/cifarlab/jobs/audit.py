"""`cifarlab audit`: what is wrong with a dataset, found in minutes.

1. Out-of-sample probabilities for every image: the training split in K stratified folds, a
   fast model trained on all folds but one predicts the one left out (so no image is judged by
   a model that learnt it); the validation and test images get the K models' average.
2. Likely wrong labels by confident learning on those probabilities (`label_issues`).
3. Identical copies by hash, near-copies by nearest neighbours in the first fold model's
   embedding, confirmed on the pixels (`duplicates`); a copy across splits is leakage.
4. The data check: images and class balance per split, near-constant images, and for an image
   folder the files' sizes and modes and the unreadable ones.
Then audit.json (every finding) and audit.html (the page), and a line per kind.

How K and the recipe were chosen, and what the audit of CIFAR-10 finds, is in
docs/guide/audit.md.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab.data import DataSplits, load_data
from cifarlab.data.checks import data_check
from cifarlab.data.splits import stratified_folds
from cifarlab.errors import CifarlabError
from cifarlab.inference.features import embed
from cifarlab.inference.findings import (
    constant_findings,
    copy_findings,
    label_findings,
    summarise,
)
from cifarlab.inference.loading import load_model
from cifarlab.jobs.training_run import run_training
from cifarlab.models import predict_logits
from cifarlab.runs import make_config
from cifarlab.runs.audit_folder import AuditFolder
from cifarlab.runs.logs import format_duration
from cifarlab.runtime import device_name, eval_batch_size, resolve_device
from cifarlab.version import __version__

AUDIT_PRESET = "fast"  # the default recipe: 2 epochs
# Three folds: each model trains on two thirds of the images, and the whole audit of CIFAR-10
# fits 10 minutes on 2 CPU cores without native bf16; docs/guide/audit.md has the measurements.
FOLDS = 3


@dataclass
class OutOfSample:
    """Each split's predicted probabilities, no image judged by a model that trained on it;
    every image's embedding (splits concatenated); each fold model's held-out accuracy."""

    probs: dict[str, np.ndarray]
    embeddings: torch.Tensor
    fold_accuracy: list[float]


def audit(data_dir: str | os.PathLike | None = None, *, dataset: str = "cifar10",
          out: str | os.PathLike | None = None, folds: int = FOLDS, preset: str = AUDIT_PRESET,
          seed: int = 0, image_size: int = 32, device: str = "auto", download: bool = True,
          quiet: bool = False, **settings: Any) -> dict[str, Any]:
    """Audit a dataset (every split as its files hold it); returns audit.json's content.
    `settings`: more training settings for the fold models (as `cifarlab train` takes)."""
    started = time.time()
    if folds < 2:
        raise CifarlabError("--folds must be at least 2: each fold is judged by a model "
                            "trained on the others")
    data = load_data(dataset, data_dir, download=download, val_size=0, image_size=image_size)
    folder = AuditFolder(out or Path("audits") / dataset)
    folder.claim()
    say = (lambda line: None) if quiet else print
    say(f"auditing {sum(len(data.split(s)[1]) for s in ('train', 'val', 'test')):,} images "
        f"of {dataset} in {folder.path}: {folds} folds of {preset} on the "
        f"{len(data.train_labels):,} training images")
    oos = out_of_sample(data, folder, folds=folds, preset=preset, seed=seed, device=device,
                        quiet=quiet, dataset=dataset, data_dir=data_dir,
                        image_size=image_size, **settings)
    say("looking for wrong labels, copies and flat images")
    findings = (label_findings(data, oos.probs) + copy_findings(data, oos.embeddings)
                + constant_findings(data))
    record = {
        "dataset": dataset, "data": data.fingerprint(), "classes": data.classes,
        "settings": {"folds": folds, "preset": preset, "seed": seed, **settings},
        "fold_accuracy": oos.fold_accuracy, "check": data_check(data, dataset, data_dir),
        "summary": summarise(findings), "findings": findings,
        "seconds": round(time.time() - started, 1), "machine": device_name(resolve_device(device)),
        "cifarlab_version": __version__,
    }
    folder.write_findings(record)
    write_page(folder, data, record, say)
    for line in summary_lines(record):
        say(line)
    return record


def write_page(folder: AuditFolder, data: DataSplits, record: dict[str, Any], say: Any) -> None:
    """audit.html; a failing page loses nothing (audit.json is written)."""
    from cifarlab.reporting.audit_page import write_audit_page  # matplotlib: only when drawing

    try:
        write_audit_page(folder.page_path, data, record)
    except Exception as e:  # noqa: BLE001 - the findings are saved
        say(f"page not written ({type(e).__name__}: {e}); the findings are in "
            f"{folder.findings_path}")


def out_of_sample(data: DataSplits, folder: AuditFolder, *, folds: int, preset: str,
                  seed: int, device: str, quiet: bool, **settings: Any) -> OutOfSample:
    """Train the K fold models (reusing those a stopped audit finished) and predict."""
    labels = data.train_labels.numpy()
    parts = stratified_folds(labels, folds, seed)
    probs = {"train": np.zeros((len(labels), len(data.classes)), dtype=np.float32)}
    others = [s for s in ("val", "test") if len(data.split(s)[1])]
    probs.update({s: np.zeros((len(data.split(s)[1]), len(data.classes)), np.float32)
                  for s in others})
    dev = resolve_device(device)
    embeddings = None
    accuracy = []
    for number, held in enumerate(parts, 1):
        kept = np.setdiff1d(np.arange(len(labels)), held)
        path = train_fold(data, kept, held, folder, number, preset=preset, seed=seed,
                          device=device, quiet=quiet, **settings)
        model = load_model(path, dev, as_trained=True)
        batch = eval_batch_size(model.config.eval_batch_size, dev)
        held_probs = softmax(predict_logits(model, data.train_images[held], batch))
        probs["train"][held] = held_probs
        accuracy.append(round(float((held_probs.argmax(1) == labels[held]).mean() * 100), 2))
        for split in others:
            probs[split] += softmax(predict_logits(model, data.split(split)[0], batch)) / folds
        if embeddings is None:
            embeddings = embed(model, torch.cat([data.split(s)[0] for s in ("train", *others)]),
                               batch)
        if not quiet:
            print(f"fold {number}/{folds}: held-out accuracy {accuracy[-1]:.2f}% on "
                  f"{len(held):,} images it did not train on")
    return OutOfSample(probs, embeddings, accuracy)


def train_fold(data: DataSplits, kept: np.ndarray, held: np.ndarray, folder: AuditFolder,
               number: int, *, preset: str, seed: int, device: str, quiet: bool,
               dataset: str, data_dir: str | os.PathLike | None, **settings: Any) -> Path:
    """Fold `number`'s run folder: a model trained on the `kept` training images (the `held`
    ones stand as its test split, never evaluated: they are predicted by the audit)."""
    empty = data.train_images[:0], data.train_labels[:0]
    fold = DataSplits(data.train_images[kept], data.train_labels[kept], *empty,
                      data.train_images[held], data.train_labels[held], data.classes,
                      data.stats)
    path = folder.fold_dir(number)
    if folder.finished_fold(number, fold.fingerprint(("train",))["train"]["sha256"]):
        if not quiet:
            print(f"fold {number}: trained already in {path}")
        return path
    cfg = make_config(preset, dataset=dataset, data_dir=None if data_dir is None else
                      str(data_dir), val_size=0, seed=seed, device=device, report=False,
                      run_dir=str(path), **settings)
    run_training(cfg, data=fold, quiet=quiet, test=False)
    return path


def softmax(logits: torch.Tensor) -> np.ndarray:
    return logits.float().softmax(1).cpu().numpy()


def summary_lines(record: dict[str, Any]) -> list[str]:
    """One line per kind of finding, then the data check's and where it all is."""
    counts = record["summary"]
    check = record["check"]
    images = {s: v["images"] for s, v in record["data"].items() if isinstance(v, dict)
              and "images" in v}
    names = {"label": "likely wrong labels", "leakage": "leakage (copies of training "
             "images in a later split)", "duplicate": "identical copies within a split",
             "near-duplicate": "near-copies within a split", "constant": "near-constant images"}
    lines = []
    for kind, name in names.items():
        per = counts.get(kind, {})
        said = ", ".join(f"{s} {n:,} ({100 * n / max(images.get(s, 1), 1):.2f}%)"
                         for s, n in per.items()) or "none"
        lines.append(f"{name}: {said}")
    lines += check["lines"]
    lines.append(f"audited in {format_duration(record['seconds'])} on {record['machine']}")
    return lines
