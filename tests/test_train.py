import csv
import json
import subprocess
import sys

import pytest
import torch

from cifarlab import evaluate, load_model, train
from cifarlab.config import make_config
from cifarlab.data import load_cifar
from cifarlab.inference import predict_logits, tta_logits
from cifarlab.networks import ema_update_fn
from cifarlab.optim import lr_factor
from cifarlab.trainer import Trainer, TrainingError
from conftest import TINY, fit_in


def tiny_config(fake_data, tmp_path, **kw):
    return make_config("fast", **{**TINY, "data_dir": str(fake_data),
                                  "run_dir": str(tmp_path / "run"), **kw})


def loss_ratio_after_training(t: Trainer) -> float:
    """Training-set loss after all of `t`'s epochs over the loss before them."""
    def loss():
        return t.evaluate(t.data.train_images, t.data.train_labels)["loss"]

    before = loss()
    for epoch in range(1, t.cfg.epochs + 1):
        t.train_epoch(epoch)
    return loss() / before


def test_training_lowers_the_loss(fake_data, tmp_path):
    cfg = tiny_config(fake_data, tmp_path, epochs=8, lr=0.2, label_smoothing=0.0)
    assert loss_ratio_after_training(Trainer(cfg)) < 0.7


def test_a_trainer_built_to_inspect_writes_nothing(fake_data, tmp_path):
    Trainer(tiny_config(fake_data, tmp_path))
    assert not (tmp_path / "run").exists()


def test_run_folder_holds_everything(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path), quiet=True)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "metrics.json",
                                               "best.pt", "last.pt", "train.log"}
    assert not list(run.glob("*.tmp")) and not (run / "lock").exists()
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(m))
    for key in ("test_top1", "test_top5", "per_class", "epochs", "train_seconds",
                "total_seconds", "device", "torch_version"):
        assert key in saved
    # The accuracy is the confusion matrix's diagonal over its total: 100 test images.
    confusion = torch.tensor(saved["confusion"])
    assert confusion.sum() == 100
    assert saved["test_top1"] == pytest.approx(confusion.diag().sum().item())
    assert saved["test_top1"] <= saved["test_top5"] and saved["epochs"] == 2
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    best = rows[saved["best_epoch"] - 1]
    assert float(best["val_acc"]) == pytest.approx(saved["best_val_acc"])
    assert json.loads((run / "config.json").read_text())["model"] == "fastnet"
    log = (run / "train.log").read_text()
    assert "epoch   2/2" in log and "test accuracy" in log and "eta" in log


def test_checkpoint_round_trip_gives_the_same_predictions(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path), quiet=True)
    model = load_model(tmp_path / "run")
    assert not model.training and model.classes[3] == "cat"
    data = load_cifar("cifar10", fake_data, download=False, val_size=50)
    logits = predict_logits(model, data.test_images)  # normalisation is inside the model
    acc = 100 * (logits.argmax(1) == data.test_labels).float().mean().item()
    assert acc == pytest.approx(m["test_top1"])
    again = evaluate(tmp_path / "run" / "best.pt", device="cpu")
    assert again["top1"] == pytest.approx(m["test_top1"])
    assert sum(map(sum, again["confusion"])) == 100


def test_seeded_runs_repeat_exactly(fake_data, tmp_path):
    a = train(tiny_config(fake_data, tmp_path / "a"), quiet=True)
    b = train(tiny_config(fake_data, tmp_path / "b"), quiet=True)
    c = train(tiny_config(fake_data, tmp_path / "c", seed=1), quiet=True)
    assert a["test_loss"] == b["test_loss"] and a["test_loss"] != c["test_loss"]


def test_early_stopping_on_validation_accuracy(fake_data, tmp_path):
    # With a vanishing learning rate nothing improves after epoch 1.
    m = train(tiny_config(fake_data, tmp_path, epochs=20, patience=2, lr=1e-12,
                          schedule="constant"), quiet=True)
    assert m["epochs"] == 3 and m["best_epoch"] == 1 and m["early_stopped"]
    assert "early stop" in (tmp_path / "run" / "train.log").read_text()


def test_without_validation_split_the_last_epoch_is_kept(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path, val_size=0, epochs=2), quiet=True)
    assert m["best_epoch"] == 2 and m["best_val_acc"] is None


def test_bf16_autocast_on_the_cpu_computes_in_bf16(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, amp="bf16"))
    dtypes = []
    t.nets.model.head.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    t.train_epoch(1)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    logits = t.predict(t.data.val_images)  # the logits handed back are float32
    assert logits.dtype == torch.float32 and dtypes[-1] == torch.bfloat16


def test_fp16_on_the_cpu_scales_the_loss(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, amp="fp16"))
    assert t.scaler.is_enabled() and t.scaler.get_scale() > 1  # not silently off
    t.train_epoch(1)
    assert t.scaler.get_scale() > 1


def test_ema_warms_up():
    """Update n blends with weight 1 - min(decay, (1 + n) / (10 + n)): the EMA follows the
    weights early on instead of staying at the initial ones."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_update_fn(0.999),
                                              use_buffers=True)
    expected = None
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
        d = min(0.999, (1 + n) / (10 + n))
        expected = value if n == 0 else d * expected + (1 - d) * value
    assert ema.module.weight.item() == pytest.approx(expected)
    assert expected > 2.5  # a plain 0.999 decay would still be at 1.003


def test_the_ema_weights_are_validated_saved_and_tested(fake_data, tmp_path):
    cfg = tiny_config(fake_data, tmp_path, ema_decay=0.999, epochs=3, lr=0.2)
    t = Trainer(cfg)
    initial = {k: v.clone() for k, v in t.nets.model.state_dict().items()}
    m = fit_in(t, tmp_path / "run")
    ema = t.nets.ema.module.state_dict()
    raw = t.nets.model.state_dict()
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(last[k], ema[k].cpu()) for k in ema)  # the EMA is what is saved
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].is_floating_point())
    # With warm-up, after ~50 steps the EMA is far nearer the trained weights than the initial.
    w = "groups.2.4.weight"
    assert (ema[w] - raw[w]).norm() < 0.5 * (ema[w] - initial[w]).norm()
    # And the validation accuracy in metrics.csv is the EMA's.
    assert t.evaluate(t.data.val_images, t.data.val_labels)["top1"] == pytest.approx(
        t.state.history[-1]["val_acc"])
    assert m["epochs"] == 3


def test_mixup_cutout_rotation_jitter_and_adamw_train(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path, mixup_alpha=0.4, cutout=8, optimizer="adamw",
                          lr=3e-3, rotation=10, color_jitter=(0.2, 0.2, 0.2, 0.1), epochs=6),
              quiet=True)
    assert m["epochs"] == 6 and m["best_val_acc"] > 20  # 10 classes: well above chance


def test_a_diverging_loss_stops_the_run(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path))
    t.nets.model.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    with pytest.raises(TrainingError, match="became nan in epoch 1.*Lower --lr"):
        fit_in(t, tmp_path / "run")


def test_a_run_folder_is_never_reused(fake_data, tmp_path):
    train(tiny_config(fake_data, tmp_path), quiet=True)
    with pytest.raises(Exception, match="already holds a run"):
        train(tiny_config(fake_data, tmp_path), quiet=True)


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


def test_optimizer_groups_spare_norms_and_biases_when_asked(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, decay_norm_and_bias=False))
    decay, no_decay, early = t.optimizer.param_groups
    assert all(p.ndim > 1 for p in decay["params"]) and no_decay["weight_decay"] == 0
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["params"]
    assert early["params"] == [t.nets.model.whiten.bias] and early["weight_decay"] == 0
    trained = {id(p) for p in t.nets.model.parameters() if p.requires_grad}
    grouped = [id(p) for g in t.optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(trained)  # every trained parameter, once


def test_the_whitening_bias_trains_only_in_its_share_of_the_run(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, whiten_bias_share=0.5, lr=0.2,
                            schedule="constant"))
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


def test_alternating_flip_flips_each_image_the_other_way_each_epoch(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, alternate_flip=True))
    seen = []
    t.augment = lambda images, g, flips: seen.append(flips) or torch.zeros(
        len(images), 3, 32, 32)
    t.nets.train_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    t.optimizer = torch.optim.SGD(t.nets.train_model.parameters(), lr=0.1)
    t.scheduler = torch.optim.lr_scheduler.LambdaLR(t.optimizer, lambda s: 1.0)
    t.order_gen.manual_seed(0)
    t.train_epoch(1)
    first = torch.cat(seen)
    seen.clear()
    t.order_gen.manual_seed(0)  # same order again, to compare image by image
    t.train_epoch(2)
    assert torch.equal(torch.cat(seen), ~first) and 0.3 < first.float().mean() < 0.7


def test_test_time_augmentation(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path))
    model = t.nets.model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        plain, flip = tta_logits(model, x), tta_logits(model, x, "flip")
        both = tta_logits(model, x, "flip-translate")
        assert torch.allclose(flip, 0.5 * (model(x) + model(x.flip(3))))
        symmetric = torch.cat([x[..., :16], x[..., :16].flip(3)], 3)  # a mirror-symmetric image
        assert torch.allclose(tta_logits(model, symmetric, "flip"), model(symmetric), atol=1e-5)
    assert both.shape == plain.shape and not torch.allclose(both, flip)
    m = train(tiny_config(fake_data, tmp_path / "tta", tta="flip-translate"), quiet=True)
    assert evaluate(tmp_path / "tta" / "run")["tta"] == "flip-translate"
    assert evaluate(tmp_path / "tta" / "run")["top1"] == pytest.approx(m["test_top1"])


def test_selective_tta_gives_the_views_to_the_least_sure_share_only():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.randn(10, 3, 8, 8)
    with torch.no_grad():
        plain, full = model(x), tta_logits(model, x, "flip-translate")
        half = tta_logits(model, x, "flip-translate", share=0.5)
        unsure = plain.softmax(1).amax(1).argsort()[:5]  # the five least sure images
        sure = torch.ones(10, dtype=torch.bool)
        sure[unsure] = False
        assert torch.allclose(half[unsure], full[unsure], atol=1e-6)
        assert torch.equal(half[sure], plain[sure]) and not torch.allclose(half, plain)
        assert torch.allclose(tta_logits(model, x, "flip", share=1.0),
                              tta_logits(model, x, "flip"))
        assert torch.equal(tta_logits(model, x, "flip", share=0.0), plain)
        one = tta_logits(model, x[:1], "flip", share=0.2)  # ceil: a lone image gets the views
        assert torch.allclose(one, tta_logits(model, x[:1], "flip"))
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    tta_logits(model, x, "flip-translate", share=0.2)
    assert calls == [10] + [2] * 5  # one view for all, the other five views for two images


def test_validation_sees_one_view_and_the_test_the_runs_tta(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, tta="flip-translate", epochs=1))
    calls = []
    t.nets.model.register_forward_hook(
        lambda mod, inp, out: None if mod.training else calls.append(len(inp[0])))
    train_log = fit_in(t, tmp_path / "run")
    assert calls == [50] and train_log["epochs"] == 1  # validation: 50 images, one view
    calls.clear()
    t.predict(t.data.test_images, tta=True)
    assert calls == [100] * 6  # the test: six views


def test_norm_and_bias_learning_rate_scale_keeps_their_decay_per_step(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, norm_bias_lr_scale=64, weight_decay=1e-3,
                            decay_norm_and_bias=True, warmup=0, schedule="constant"))
    weights, others, _ = t.optimizer.param_groups
    assert others["lr"] == pytest.approx(64 * weights["lr"])
    assert others["lr"] * others["weight_decay"] == pytest.approx(weights["lr"] * 1e-3)


def test_predict_logits_restores_train_mode_after_an_error(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path))
    t.nets.model.train()

    def fail(mod, inp):
        raise RuntimeError("boom")

    hook = t.nets.model.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        t.predict(t.data.val_images)
    hook.remove()
    assert t.nets.model.training


def test_metrics_json_is_published_whole_or_not_at_all(fake_data, tmp_path, monkeypatch):
    """metrics.json marks a finished run: a failure while writing it leaves none (the run can
    be resumed), never a truncated one."""
    from pathlib import Path

    from cifarlab import resume
    from cifarlab.errors import CifarlabError

    real = Path.write_text

    def disk_full_on_metrics(self, text, *a, **kw):
        if self.name.startswith("metrics.json"):
            real(self, text[:10], *a, **kw)
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", disk_full_on_metrics)
    with pytest.raises(CifarlabError, match="cannot write .*metrics.json: No space left"):
        train(tiny_config(fake_data, tmp_path), quiet=True)
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists() and not list(run.glob("*.tmp"))
    monkeypatch.setattr(Path, "write_text", real)
    assert resume(run, quiet=True)["epochs"] == 2


def test_micro_batches_give_the_same_step_as_the_whole_batch(fake_data, tmp_path):
    """Without BatchNorm (tutorial-cnn, no dropout), pieces of 10 + 11 + 11 images make the
    same update as the batch of 32 at once."""
    kw = dict(model="tutorial-cnn", model_args={"dropout": 0.0}, lr=0.05, epochs=1)
    whole = Trainer(tiny_config(fake_data, tmp_path, **kw))
    pieces = Trainer(tiny_config(fake_data, tmp_path, micro_batch=11, **kw))
    loss_whole, _, _ = whole.train_epoch(1)
    loss_pieces, _, _ = pieces.train_epoch(1)
    assert loss_pieces == pytest.approx(loss_whole, rel=1e-5)
    for p, q in zip(whole.nets.model.parameters(), pieces.nets.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_muon_trains(fake_data, tmp_path):
    cfg = tiny_config(fake_data, tmp_path, optimizer="muon", muon_lr=0.1, lr=0.2, epochs=6,
                      nesterov=True, schedule="onecycle", micro_batch=16)
    t = Trainer(cfg)
    assert loss_ratio_after_training(t) < 0.7
    filters = [g for g in t.optimizer.param_groups if g["role"] == "filters"][0]["params"]
    for p in filters:  # Muon keeps each filter bank at norm sqrt(out channels), then steps
        assert abs(p.norm().item() - len(p) ** 0.5) < 0.2 * len(p) ** 0.5


def test_the_first_epochs_can_train_at_a_lower_resolution(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, epochs=3, low_res_epochs=1, low_res_size=20))
    sizes = []
    t.nets.model.register_forward_hook(lambda m, inputs, out: sizes.append(inputs[0].shape[-1]))
    t.train_epoch(1)
    assert set(sizes) == {20}
    sizes.clear()
    t.train_epoch(2)
    assert set(sizes) == {32}
    assert t.evaluate(t.data.val_images, t.data.val_labels)["top1"] >= 0  # evaluated at 32


def test_low_res_epochs_can_ramp_up_one_size_per_epoch(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, epochs=4, low_res_epochs=3,
                            low_res_size=[16, 24, 28]))
    sizes = []
    t.nets.model.register_forward_hook(lambda m, inputs, out: sizes.append(inputs[0].shape[-1]))
    for epoch in range(1, 5):
        t.train_epoch(epoch)
    assert sorted(set(sizes), key=sizes.index) == [16, 24, 28, 32]
    assert [t.cfg.epoch_size(e) for e in range(1, 5)] == [16, 24, 28, 32]
    one = make_config("fast", epochs=3, low_res_epochs=2, low_res_size=20)  # a lone size: all
    assert one.low_res_size == (20,) and [one.epoch_size(e) for e in (1, 2, 3)] == [20, 20, 32]


@pytest.mark.parametrize("sizes, message", [
    ([24, 28], "one size, or one per low-res epoch \\(3\\), not 2"),
    ([24, 40, 28], "must be in \\[8, image_size\\]"),
])
def test_low_res_sizes_that_do_not_fit_are_one_line_errors(sizes, message):
    with pytest.raises(ValueError, match=message):
        make_config("94", low_res_size=sizes)


def test_low_res_epochs_must_fit_the_run_and_the_last_epoch_is_full_size(fake_data, tmp_path):
    with pytest.raises(ValueError, match="low_res_epochs"):
        make_config("fast", epochs=4, low_res_epochs=5)
    t = Trainer(tiny_config(fake_data, tmp_path, epochs=1, low_res_epochs=1, low_res_size=20))
    sizes = []
    t.nets.model.register_forward_hook(lambda m, inputs, out: sizes.append(inputs[0].shape[-1]))
    t.train_epoch(1)
    assert set(sizes) == {32}  # a one-epoch run of a low-res preset trains as it is tested


def test_another_model_leaves_the_presets_low_res_epochs():
    assert make_config("fast").low_res_epochs == 1
    assert make_config("fast", model="tutorial-cnn").low_res_epochs == 0  # fixed 32x32 input
    assert make_config("fast", model="resnet9", low_res_epochs=1).low_res_epochs == 1


# Five 64 MB blocks allocated, written and freed, before and after keep_freed_memory: glibc
# maps such blocks afresh each time (a page fault per 4 kB page), unless told to keep them.
_REFAULTS = """
import resource, torch
from cifarlab.runtime import keep_freed_memory
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        block = torch.ones(2**24)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
plain = faults()
took = keep_freed_memory()
faults()
print(took, plain, faults())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator: Linux only")
def test_training_on_the_cpu_reuses_freed_memory_instead_of_faulting_it_in_again(
        fake_data, tmp_path, monkeypatch):
    out = subprocess.run([sys.executable, "-c", _REFAULTS], capture_output=True, text=True,
                         check=True).stdout.split()
    took, plain, kept = out[0] == "True", int(out[1]), int(out[2])
    assert took and kept < max(plain / 10, 50), (plain, kept)
    calls = []
    monkeypatch.setattr("cifarlab.trainer.keep_freed_memory", lambda: calls.append(1))
    Trainer(tiny_config(fake_data, tmp_path))
    assert calls == [1]


_RELEASES = """
import os, torch
from cifarlab.runtime import keep_freed_memory, release_freed_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
keep_freed_memory()
block = torch.ones(2**26)  # 256 MB, kept after the del
del block
kept = rss_mb()
print(release_freed_memory(), kept - rss_mb())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator: Linux only")
def test_training_hands_the_kept_memory_back_before_the_test(fake_data, tmp_path,
                                                             monkeypatch):
    out = subprocess.run([sys.executable, "-c", _RELEASES], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "True" and float(out[1]) > 200, out  # MB handed back
    calls = []
    monkeypatch.setattr("cifarlab.trainer.release_freed_memory", lambda: calls.append(1))
    fit_in(Trainer(tiny_config(fake_data, tmp_path, epochs=1)), tmp_path / "run")
    assert calls == [1]


def test_the_trained_network_uses_trimmed_convolutions_on_the_cpu(fake_data, tmp_path):
    from cifarlab.models.trimmed_conv import TrimmedConv2d

    t = Trainer(tiny_config(fake_data, tmp_path, optimizer="muon"))
    convs = [m for m in t.nets.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is TrimmedConv2d for m in convs)
    assert t.optimizer.ns_dtype == (torch.bfloat16 if t.amp == torch.bfloat16 else torch.float32)


def test_compile_wraps_the_training_model_or_says_why_it_cannot(fake_data, tmp_path,
                                                                 monkeypatch):
    import torch._inductor.cpp_builder as builder

    t = Trainer(tiny_config(fake_data, tmp_path, compile=True))
    if t.compile_blocker is None:  # this machine has a C++ compiler
        assert t.compiled and t.nets.train_model is not t.nets.model

    def no_compiler():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(builder, "get_cpp_compiler", no_compiler)
    t = Trainer(tiny_config(fake_data, tmp_path, compile=True))
    assert not t.compiled and t.nets.train_model is t.nets.model
    assert "needs a C++ compiler" in t.compile_blocker
