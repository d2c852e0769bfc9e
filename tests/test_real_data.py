"""Trains on the real CIFAR-10 (the shared read-only copy) for about two minutes on 2 CPU cores."""

import pytest

from cifarlab import train

# Measured on a 2-core x86 CPU: 69.5% test accuracy after these 2 epochs (seed 0, 2 min);
# the floor leaves room for other CPUs' floating-point differences, not for regressions.
FLOOR = 65.0


@pytest.mark.slow
def test_two_epochs_of_the_default_preset_on_real_cifar10(real_data, tmp_path):
    m = train(preset="fast", epochs=2, data_dir=str(real_data), run_dir=str(tmp_path / "run"),
              quiet=True)
    assert m["test_top1"] >= FLOOR, f"test accuracy {m['test_top1']:.2f}% < {FLOOR}%"
    assert m["test_top5"] >= 95.0
    assert m["best_val_acc"] is not None and m["best_epoch"] in (1, 2)
    # The test set stays untouched by training: 10,000 images, 1,000 per class.
    assert sum(map(sum, m["confusion"])) == 10000
