"""The training loop (training/trainer.py) and its assembly (training/build.py): what a step, an
epoch and a fit do, on tiny fake data."""

import pytest
import torch
from torch import nn

from cifarlab.data import load_data
from cifarlab.data.augment import Augmenter
from cifarlab.errors import TrainingError
from cifarlab.models import Classifier
from cifarlab.models.cpu_convolutions import CpuConv2d
from cifarlab.runs import RunFolder
from cifarlab.training import Trainer, build_trainer
from cifarlab.training.networks import Networks
from cifarlab.training.state import TrainRandom
from conftest import fit_in, tiny_config, tiny_trainer


def loss_ratio_after_training(t: Trainer) -> float:
    """Training-set loss after all of `t`'s epochs over the loss before them."""
    def loss():
        return t.validate(t.data.train_images, t.data.train_labels)["loss"]

    before = loss()
    for epoch in range(1, t.cfg.epochs + 1):
        t.train_epoch(epoch)
    return loss() / before


def test_training_lowers_the_loss(fake_data):
    t = tiny_trainer(fake_data, epochs=8, lr=0.2, label_smoothing=0.0)
    assert loss_ratio_after_training(t) < 0.7


def test_building_a_trainer_changes_nothing_outside_it(fake_data, tmp_path):
    """Threads, glibc's malloc and the global seeds are the job's to set
    (runtime.prepare_process): building a Trainer writes no file, sets no thread count and
    seeds nothing; it draws its initial weights from the process's generator as it finds it."""
    threads = torch.get_num_threads()
    data = load_data("cifar10", fake_data, val_size=50)
    cfg = tiny_config(fake_data, tmp_path / "run", num_threads=1).resolved(fake_data,
                                                                             data.stats)

    def first_filter(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        t = build_trainer(cfg, data, device=torch.device("cpu"))
        return t.nets.model.head.weight.detach().clone()

    assert torch.equal(first_filter(123), first_filter(123))
    assert not torch.equal(first_filter(123), first_filter(7))
    assert not (tmp_path / "run").exists() and torch.get_num_threads() == threads


def test_a_trainer_takes_its_parts(fake_data):
    """The seam the assembly leaves: a Trainer of any network, optimizer and augmentation.
    Here a linear model on flat pixels, and an augmentation that records the flips it is given:
    alternating flips give each image the other flip each epoch."""
    cfg = tiny_config(fake_data, alternate_flip=True, epochs=2)
    data = load_data("cifar10", fake_data, val_size=50)
    cfg = cfg.resolved(fake_data, data.stats)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []

    def augment(images, g, flips):
        seen.append(flips)
        return torch.zeros(len(images), 3, 32, 32)

    t = Trainer(cfg, data=data, nets=Networks(net, net, None, torch.device("cpu"), None, False),
                optimizer=optimizer,
                scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                augmenter=augment, random=TrainRandom(0, 0, torch.device("cpu"),
                                                      flip_images=len(data.train_images)))
    t.train_epoch(1)
    first = torch.cat(seen)
    seen.clear()
    t.random.order.manual_seed(0)  # the first epoch's order again, to compare image by image
    t.train_epoch(2)
    assert torch.equal(torch.cat(seen), ~first) and 0.3 < first.float().mean() < 0.7


@pytest.mark.cpu_kinds
def test_bf16_autocast_on_the_cpu_computes_in_bf16(fake_data):
    t = tiny_trainer(fake_data, amp="bf16")
    dtypes = []
    t.nets.model.head.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    t.train_epoch(1)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    logits = t.validator(t.data.val_images[:4].float() / 255)  # handed back as float32
    assert logits.dtype == torch.float32 and dtypes[-1] == torch.bfloat16


def test_fp16_on_the_cpu_scales_the_loss(fake_data):
    t = tiny_trainer(fake_data, amp="fp16")
    assert t.scaler.is_enabled() and t.scaler.get_scale() > 1  # not silently off
    t.train_epoch(1)
    assert t.scaler.get_scale() > 1


def test_the_ema_weights_are_validated_saved_and_tested(fake_data, tmp_path):
    t = tiny_trainer(fake_data, ema_decay=0.999, epochs=3, lr=0.2)
    initial = {k: v.clone() for k, v in t.nets.model.state_dict().items()}
    m = fit_in(t, tmp_path / "run")
    ema = t.nets.ema.module.state_dict()
    raw = t.nets.model.state_dict()
    last = RunFolder(tmp_path / "run").checkpoint("last")
    assert all(torch.equal(last.state_dict[k], ema[k].cpu()) for k in ema)  # the EMA is saved
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].is_floating_point())
    # With warm-up, after ~50 steps the EMA is far nearer the trained weights than the initial.
    w = "groups.2.4.weight"
    assert (ema[w] - raw[w]).norm() < 0.5 * (ema[w] - initial[w]).norm()
    # And the validation accuracy in metrics.csv is the EMA's.
    assert t.validate(t.data.val_images, t.data.val_labels)["top1"] == pytest.approx(
        t.state.history[-1]["val_acc"])
    assert m["epochs"] == 3


def test_last_pt_holds_the_weights_once(fake_data, tmp_path):
    """Without an EMA, the weights to use and the trainer's own are the same tensors."""
    fit_in(tiny_trainer(fake_data, epochs=1), tmp_path / "run")
    last = RunFolder(tmp_path / "run").checkpoint("last")
    for k, v in last.state_dict.items():
        assert v.untyped_storage().data_ptr() == last.resume["model"][k].untyped_storage(
            ).data_ptr(), k


def test_a_diverging_loss_stops_the_run(fake_data, tmp_path):
    t = tiny_trainer(fake_data)
    t.nets.model.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    with pytest.raises(TrainingError, match="became nan in epoch 1.*Lower --lr"):
        fit_in(t, tmp_path / "run")


def test_optimizer_groups_spare_norms_and_biases_when_asked(fake_data):
    t = tiny_trainer(fake_data, decay_norm_and_bias=False)
    decay, no_decay, early = t.optimizer.param_groups
    assert all(p.ndim > 1 for p in decay["params"]) and no_decay["weight_decay"] == 0
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["params"]
    assert early["params"] == [t.nets.model.whiten.bias] and early["weight_decay"] == 0
    trained = {id(p) for p in t.nets.model.parameters() if p.requires_grad}
    grouped = [id(p) for g in t.optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(trained)  # every trained parameter, once


def test_norm_and_bias_learning_rate_scale_keeps_their_decay_per_step(fake_data):
    t = tiny_trainer(fake_data, norm_bias_lr_scale=64, weight_decay=1e-3,
                     decay_norm_and_bias=True, warmup=0, schedule="constant")
    weights, others, _ = t.optimizer.param_groups
    assert others["lr"] == pytest.approx(64 * weights["lr"])
    assert others["lr"] * others["weight_decay"] == pytest.approx(weights["lr"] * 1e-3)


def test_the_whitening_bias_trains_only_in_its_share_of_the_run(fake_data):
    t = tiny_trainer(fake_data, whiten_bias_share=0.5, lr=0.2, schedule="constant")
    bias = t.nets.model.whiten.bias
    assert torch.count_nonzero(bias) == 0
    t.train_epoch(1)
    after_first = bias.detach().clone()
    assert torch.count_nonzero(after_first) > 0  # it trained in the first half
    assert bias.requires_grad
    t.train_epoch(2)
    assert torch.equal(bias.detach(), after_first)  # and not in the second,
    assert not bias.requires_grad and bias.grad is None  # where the backward skips it
    lrs = [g["lr"] for g in t.optimizer.param_groups]
    assert lrs[0] > 0 and lrs[1] > 0 and lrs[2] == 0  # the rest still learns


def test_validation_sees_one_view(fake_data, tmp_path):
    t = tiny_trainer(fake_data, tta="flip-translate", epochs=1)
    calls = []
    t.nets.model.register_forward_hook(
        lambda mod, inp, out: None if mod.training else calls.append(len(inp[0])))
    summary = fit_in(t, tmp_path / "run")
    assert calls == [50] and summary["epochs"] == 1  # validation: 50 images, one view


def test_micro_batches_give_the_same_step_as_the_whole_batch(fake_data):
    """Without BatchNorm (tutorial-cnn, no dropout), pieces of 10 + 11 + 11 images make the
    same update as the batch of 32 at once."""
    kw = dict(model="tutorial-cnn", model_args={"dropout": 0.0}, lr=0.05, epochs=1)
    whole = tiny_trainer(fake_data, **kw)
    pieces = tiny_trainer(fake_data, micro_batch=11, **kw)
    loss_whole, _, _ = whole.train_epoch(1)
    loss_pieces, _, _ = pieces.train_epoch(1)
    assert loss_pieces == pytest.approx(loss_whole, rel=1e-5)
    for p, q in zip(whole.nets.model.parameters(), pieces.nets.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_muon_trains(fake_data):
    t = tiny_trainer(fake_data, optimizer="muon", muon_lr=0.1, lr=0.2, epochs=6,
                     nesterov=True, schedule="onecycle", micro_batch=16)
    assert loss_ratio_after_training(t) < 0.7
    filters = [g for g in t.optimizer.param_groups if g["role"] == "filters"][0]["params"]
    for p in filters:  # Muon keeps each filter bank at norm sqrt(out channels), then steps
        assert abs(p.norm().item() - len(p) ** 0.5) < 0.2 * len(p) ** 0.5


def input_sizes(t: Trainer) -> list[int]:
    """Records the image size of every forward pass of `t`'s network."""
    sizes = []
    t.nets.model.register_forward_hook(lambda m, inputs, out: sizes.append(inputs[0].shape[-1]))
    return sizes


def test_the_first_epochs_can_train_at_a_lower_resolution(fake_data):
    t = tiny_trainer(fake_data, epochs=3, low_res_epochs=1, low_res_size=20)
    sizes = input_sizes(t)
    t.train_epoch(1)
    assert set(sizes) == {20}
    sizes.clear()
    t.train_epoch(2)
    assert set(sizes) == {32}
    sizes.clear()
    t.validate(t.data.val_images, t.data.val_labels)
    assert set(sizes) == {32}  # validation sees the full size, as the test does


def test_low_res_epochs_can_ramp_up_one_size_per_epoch(fake_data):
    t = tiny_trainer(fake_data, epochs=4, low_res_epochs=3, low_res_size=[16, 24, 28])
    sizes = input_sizes(t)
    for epoch in range(1, 5):
        t.train_epoch(epoch)
    assert sorted(set(sizes), key=sizes.index) == [16, 24, 28, 32]
    assert [t.cfg.epoch_size(e) for e in range(1, 5)] == [16, 24, 28, 32]


def test_a_one_epoch_run_of_a_low_res_preset_trains_at_full_size(fake_data):
    t = tiny_trainer(fake_data, epochs=1, low_res_epochs=1, low_res_size=20)
    sizes = input_sizes(t)
    t.train_epoch(1)
    assert set(sizes) == {32}  # the last epoch always trains as it is tested


def test_the_trained_network_uses_trimmed_convolutions_on_the_cpu(fake_data):
    t = tiny_trainer(fake_data, optimizer="muon")
    convs = [m for m in t.nets.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is CpuConv2d for m in convs)
    bf16 = t.nets.amp == torch.bfloat16
    assert t.optimizer.ns_dtype == (torch.bfloat16 if bf16 else torch.float32)


def test_compile_wraps_the_training_model_or_says_why_it_cannot(fake_data, monkeypatch):
    import torch._inductor.cpp_builder as builder

    t = tiny_trainer(fake_data, compile=True)
    if t.nets.compile_blocker is None:  # this machine has a C++ compiler
        assert t.nets.compiled and t.nets.train_model is not t.nets.model

    def no_compiler():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(builder, "get_cpp_compiler", no_compiler)
    t = tiny_trainer(fake_data, compile=True)
    assert not t.nets.compiled and t.nets.train_model is t.nets.model
    assert "needs a C++ compiler" in t.nets.compile_blocker


def test_the_validator_is_the_inference_path(fake_data):
    t = tiny_trainer(fake_data)
    assert isinstance(t.validator, Classifier) and t.validator.tta == "none"
    assert t.validator.net is t.nets.eval_model and isinstance(t.augment, Augmenter)


def test_a_long_first_epoch_is_announced_after_a_few_steps(fake_data, tmp_path, monkeypatch):
    """Slow steps (a patched clock: 100 s a reading) make the first epoch's length known early, in
    one line; fast ones say nothing."""
    import cifarlab.training.trainer as trainer_module

    clock = iter(range(0, 10**7, 100))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: next(clock))
    run = tmp_path / "slow"
    fit_in(tiny_trainer(fake_data, epochs=1), run)
    lines = [line for line in (run / "train.log").read_text().splitlines()
             if "will take about" in line]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1 will take about")
    monkeypatch.undo()
    fast = tmp_path / "fast"
    fit_in(tiny_trainer(fake_data, epochs=1), fast)
    assert "will take about" not in (fast / "train.log").read_text()
