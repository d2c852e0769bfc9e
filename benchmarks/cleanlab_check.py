"""cifarlab's confident learning (inference/label_issues.py) beside cleanlab's, on simulated
out-of-sample probabilities: how many images each flags and how many both flag.

    pip install cleanlab   # not a dependency of cifarlab: it brings scikit-learn and pandas
    python benchmarks/cleanlab_check.py

Four sets of 5,000 images, 10 classes, 5% of the labels flipped; the model's logits favour
the true class by 1.5 to 4 (52% to 98% accuracy).
"""

from __future__ import annotations

import numpy as np
from cleanlab.filter import find_label_issues as cleanlab_issues

from cifarlab.inference.label_issues import find_label_issues


def simulated(seed: int, boost: float, n: int = 5000, k: int = 10
              ) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    given = true.copy()
    flipped = rng.choice(n, n // 20, replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, len(flipped))) % k
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += boost
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, given, float((probs.argmax(1) == true).mean())


def main() -> None:
    print("| model accuracy | cifarlab flags | cleanlab flags | both | same top 10 |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for seed, boost in [(0, 3.0), (1, 2.0), (2, 4.0), (3, 1.5)]:
        probs, given, accuracy = simulated(seed, boost)
        ours = find_label_issues(probs, given).indices
        theirs = cleanlab_issues(given, probs, filter_by="prune_by_noise_rate", n_jobs=1,
                                 return_indices_ranked_by="self_confidence")
        both = len(set(ours.tolist()) & set(theirs.tolist()))
        same = list(ours[:10]) == list(theirs[:10])
        print(f"| {100 * accuracy:.1f}% | {len(ours):,} | {len(theirs):,} | {both:,} | {same} |")


if __name__ == "__main__":
    main()
