"""Temperature scaling (Guo et al. 2017): one number T divides the logits, the predictions stay
the same, the probabilities become trustworthy. A run with a validation split fits its own at
the end of training; `cifarlab evaluate RUN --calibrate` fits it again for the chosen weights.
It is saved with the run (calibration.json) and used by every later load (predict, export,
the package, the demo); a run without a validation split uses its preset's (runs/presets.py)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cifarlab.errors import CifarlabError
from cifarlab.inference.evaluation import predict_split
from cifarlab.metrics import calibrated_metrics
from cifarlab.runs import RunFolder

FIGURES = ("top1", "ece", "nll", "brier")


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the negative log-likelihood of softmax(logits / T): L-BFGS on
    log T in float64 (the loss is convex in 1/T, so the minimum is the only one)."""
    logits, labels = logits.double(), labels.to(logits.device)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def calibration_record(val_logits: torch.Tensor, val_labels: torch.Tensor, checkpoint: str
                       ) -> dict[str, Any]:
    """The temperature fitted on validation logits, as calibration.json keeps it for the
    weights in `checkpoint` (a file name of the run folder)."""
    t = fit_temperature(val_logits, val_labels)
    labels = val_labels.to(val_logits.device)
    return {"temperature": t, "checkpoint": checkpoint, "fitted_on": "val",
            "val_images": len(val_labels),
            "val_nll_before": F.cross_entropy(val_logits, labels).item(),
            "val_nll_after": F.cross_entropy(val_logits / t, labels).item(),
            "fitted": datetime.now().isoformat("T", "seconds")}


def check_calibratable(path: Path) -> RunFolder:
    """A run folder with a validation split, not training now."""
    folder = RunFolder(path)
    if not path.is_dir() or not RunFolder.holds_run(path):
        raise CifarlabError(f"{path} is not a run folder: --calibrate saves the temperature with "
                            "the run (calibrate the run, then export its package again)")
    if folder.lock.live_owner() is not None:
        raise CifarlabError(f"{path} is still training; calibrate it when it has finished")
    if not folder.settings().val_size:
        raise CifarlabError(f"{path} has no validation split (it trained with --val-size 0), so "
                            "it cannot be calibrated without looking at the test set; train "
                            "with --val-size N (e.g. 5000)")
    return folder


def calibrate(run_dir: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
              device: str = "auto", batch_size: int | None = None) -> dict[str, Any]:
    """Fit the temperature on the validation split, save it with the run, and score the test
    set before and after (the same logits, divided)."""
    folder = check_calibratable(Path(run_dir))
    common = dict(data_dir=data_dir, device=device, batch_size=batch_size, calibrated=False)
    val = predict_split(folder.path, split="val", **common)
    test = predict_split(folder.path, split="test", **common)
    if test["split"] != "test":
        raise CifarlabError(f"{folder.path}'s image folder has no test/, so its validation "
                            "split stands in for the test set: a temperature fitted on it "
                            "would be scored on the images it was fitted to; add test/")
    record = calibration_record(val["logits"], val["labels"],
                                folder.chosen_checkpoint_path().name)
    after = calibrated_metrics(test["logits"], test["labels"], test["classes"],
                               record["temperature"], "val")
    before = {"top1": after["top1"], **after["calibration"]["before"]}  # the same top-1
    result = {**record, "test_before": {k: before[k] for k in FIGURES},
              "test_after": {k: after[k] for k in FIGURES}}
    folder.write_calibration(result)
    return {**result, "metrics_after": after}
