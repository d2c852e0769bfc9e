"""What `cifarlab train --time` chooses from: the speed presets at the lengths their development
runs measured, with the validation accuracy they reached. Each figure is the mean over seeds
of `benchmarks/budget-candidates.json` (made by benchmarks/budget_candidates.py: 45,000
training images, judged on the 5,000-image validation split with the preset's test-time
views, never on the test set); a test keeps the two the same. Smallest network first, each
network's lengths in order: the order the probe measures them in.
"""

from __future__ import annotations

# (preset, epochs): validation accuracy in %, the preset's test-time views.
CANDIDATES: dict[tuple[str, int], float] = {
    ("fast", 1): 81.4, ("fast", 2): 85.4, ("fast", 3): 85.82, ("fast", 4): 87.44,
    ("fast", 6): 88.7, ("fast", 8): 88.58, ("fast", 10): 89.26, ("90", 3): 87.98, ("90", 5): 90.0,
    ("90", 7): 90.4, ("90", 8): 90.84, ("94", 3): 89.72, ("94", 5): 92.02, ("94", 9): 93.87,
    ("95", 16): 94.7,
}

# Settings that say where and how a run is kept, not what it computes: a budget run that sets
# only these is still the measured recipe.
PLACEMENT = frozenset({"data_dir", "download", "run_dir", "seed", "report", "device",
                       "num_threads", "eval_batch_size", "val_size", "split_seed"})
