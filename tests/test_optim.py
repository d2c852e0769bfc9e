"""Parameter groups, the optimizer and the schedule of a run (training/optim.py)."""

import pytest
import torch
from torch import nn

from cifarlab.models import create_model
from cifarlab.runs import make_config
from cifarlab.training.optim import build_optimizer, build_scheduler, lr_factor


def test_muon_groups_from_the_config():
    cfg = make_config("fast", optimizer="muon", muon_lr=0.3, muon_momentum=0.6,
                      whiten_bias_share=0.375, epochs=8)
    model = create_model("fastnet", 10, widths=[8, 8, 8])
    opt = build_optimizer(model, cfg)
    roles = {g["role"]: g for g in opt.param_groups}
    assert set(roles) == {"weights", "norms", "early", "filters"}
    filters = roles["filters"]
    assert filters["muon"] and filters["lr"] == 0.3 and filters["momentum"] == 0.6
    assert all(p.ndim == 4 for p in filters["params"]) and len(filters["params"]) == 6
    assert all(p is not model.whiten.weight for p in filters["params"])  # frozen, untrained
    assert roles["weights"]["params"] == [model.head.weight]
    assert not roles["norms"]["muon"]
    # The early group (whitening bias) stops after 3 of 8 epochs; the filters decay with the rest.
    sched = build_scheduler(opt, cfg, steps_per_epoch=10)
    for _ in range(30):
        opt.step()
        sched.step()
    assert roles["early"]["lr"] == 0.0 and roles["filters"]["lr"] > 0


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_bad_muon_lr_is_refused(value):
    with pytest.raises(ValueError, match="muon_lr"):
        make_config("fast", optimizer="muon", muon_lr=value)


def test_newton_schulz_runs_in_bf16_when_the_run_does():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 5, 5))
    cfg = make_config("fast")
    assert build_optimizer(model, cfg, amp=torch.bfloat16).ns_dtype == torch.bfloat16
    assert build_optimizer(model, cfg, amp=torch.float16).ns_dtype == torch.float32
    assert build_optimizer(model, cfg).ns_dtype == torch.float32
    pinned = make_config("fast", muon_ns_precision="float32")
    assert build_optimizer(model, pinned, amp=torch.bfloat16).ns_dtype == torch.float32
    assert make_config("94").muon_ns_precision == "float32"  # as it was tuned


def test_learning_rate_schedules():
    cfg = make_config("fast", epochs=10, warmup=0.2, schedule="onecycle")
    assert [lr_factor(cfg, t) for t in (0, 1, 2, 6, 10)] == [0, 0.5, 1, 0.5, 0]
    cos = make_config("seed", t_max=100, epochs=300)
    assert lr_factor(cos, 0) == 1 and lr_factor(cos, 50) == pytest.approx(0.5)
    assert lr_factor(cos, 100) == pytest.approx(0) and lr_factor(cos, 200) == pytest.approx(1)
    step = make_config("fast", schedule="step", step_size=3, gamma=0.1, warmup=0)
    assert lr_factor(step, 2.9) == 1 and lr_factor(step, 3) == pytest.approx(0.1)
    flat = make_config("fast", schedule="constant", warmup=0.5, epochs=8)
    assert lr_factor(flat, 1) == 0.25 and lr_factor(flat, 8) == 1


def test_warmup_is_a_share_of_the_run_so_a_short_run_leaves_it():
    short = make_config("resnet18", epochs=3)  # warm-up: 2/30 of the run
    assert lr_factor(short, 0.2) == pytest.approx(1.0)  # the peak, 2/30 into the run
    assert lr_factor(short, 3) == 0.0
