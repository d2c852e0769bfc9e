"""Images whose given label is likely wrong, by confident learning (Northcutt, Jiang and Chuang,
"Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021), from out-of-sample
predicted probabilities.

The method as cleanlab's `find_label_issues(filter_by="prune_by_noise_rate")` applies it,
written out in NumPy (cleanlab would bring scikit-learn and pandas for these few lines):
1. a threshold per class: the mean probability of that class over the images labelled with it;
2. the confident joint: each image counts towards (given label, the most probable class among
   those over their threshold), rows then scaled to the given labels' counts;
3. for each off-diagonal cell (given i, true j), its share of the images is taken from class i:
   the images of label i with the largest margin p_j - p_i;
4. an image the model predicts as its given label is never flagged.
Each flagged image is ranked by its self-confidence (the probability of its given label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LabelIssues:
    """Flagged images (indices into the split, most likely wrong first), their suggested label
    (the most probable other class) and self-confidence; and the estimated share of wrong
    labels in the split (the confident joint's off-diagonal mass)."""

    indices: np.ndarray
    suggested: np.ndarray
    confidence: np.ndarray
    noise_share: float


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, K) counts: given label i, confidently class j; rows scaled to the counts of the
    given labels (a row with no confident image keeps its count on the diagonal)."""
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    thresholds = np.array([probs[labels == c, c].mean() if counts[c] else 1.0
                           for c in range(k)])
    above = probs >= thresholds - 1e-6
    confident = above.any(1)
    true = np.where(above, probs, -1.0).argmax(1)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[confident], true[confident]), 1)
    rows = joint.sum(1, keepdims=True)
    scaled = np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)
    scaled[rows[:, 0] == 0] = np.diag(counts)[rows[:, 0] == 0]
    return scaled


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Confident learning's label issues of one split: `probs` (N, K) out-of-sample predicted
    probabilities, `labels` (N,) the given labels."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probs.shape
    joint = confident_joint(probs, labels)
    joint_share = joint / max(joint.sum(), 1.0)
    flagged = np.zeros(n, dtype=bool)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        for j in range(k):
            take = int(round(joint_share[i, j] * n)) if j != i else 0
            if take and len(members):
                margin = probs[members, j] - probs[members, i]
                flagged[members[np.argsort(-margin, kind="stable")[:take]]] = True
    flagged &= probs.argmax(1) != labels
    indices = np.flatnonzero(flagged)
    confidence = probs[indices, labels[indices]]
    order = np.argsort(confidence, kind="stable")
    others = probs[indices].copy()
    others[np.arange(len(indices)), labels[indices]] = -1.0
    return LabelIssues(indices[order], others.argmax(1)[order], confidence[order],
                       float(1.0 - np.trace(joint_share)))
