"""The networks of a run (training/networks.py): the warmed-up EMA."""

import pytest
import torch

from cifarlab.training.networks import MovingAverage


def test_ema_warms_up():
    """Update n blends with weight 1 - min(decay, (1 + n) / (10 + n)): the EMA follows the
    weights early on instead of staying at the initial ones."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = MovingAverage(model, 0.999)
    expected = None
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
        d = min(0.999, (1 + n) / (10 + n))
        expected = value if n == 0 else d * expected + (1 - d) * value
    assert ema.module.weight.item() == pytest.approx(expected)
    assert expected > 2.5  # a plain 0.999 decay would still be at 1.003


def test_the_moving_average_keeps_torchs_checkpoint_keys():
    """Checkpoints written while the EMA was torch's AveragedModel load into it."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    theirs = torch.optim.swa_utils.AveragedModel(model, use_buffers=True)
    theirs.update_parameters(model)
    ours = MovingAverage(model, 0.9)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert int(ours.n_averaged) == 1
