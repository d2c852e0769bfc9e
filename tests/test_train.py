import csv
import json

import pytest
import torch

from cifarlab import evaluate, load_model, train
from cifarlab.config import make_config
from cifarlab.data import load_cifar
from cifarlab.evaluate import predict_logits
from cifarlab.optim import lr_factor
from cifarlab.train import Trainer, TrainingError
from conftest import TINY


def tiny_config(fake_data, tmp_path, **kw):
    return make_config("fast", **{**TINY, "data_dir": str(fake_data),
                                  "run_dir": str(tmp_path / "run"), **kw})


def test_training_lowers_the_loss(fake_data, tmp_path):
    cfg = tiny_config(fake_data, tmp_path, epochs=8, lr=0.2, label_smoothing=0.0)
    t = Trainer(cfg, quiet=True)

    def loss():
        return t.evaluate(t.data.train_images, t.data.train_labels)["loss"]

    before = loss()
    for epoch in range(1, 9):
        t.train_epoch(epoch)
    assert loss() < 0.7 * before


def test_run_folder_holds_everything(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path), quiet=True)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "metrics.json",
                                               "best.pt", "last.pt", "train.log"}
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(m))
    for key in ("test_top1", "test_top5", "per_class", "epochs", "train_seconds",
                "total_seconds", "device", "torch_version"):
        assert key in saved
    assert 0 <= saved["test_top1"] <= saved["test_top5"] <= 100 and saved["epochs"] == 2
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["val_acc"]) >= 0
    assert json.loads((run / "config.json").read_text())["model"] == "fastnet"
    log = (run / "train.log").read_text()
    assert "epoch   2/2" in log and "test accuracy" in log and "eta" in log


def test_checkpoint_round_trip_gives_the_same_predictions(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path), quiet=True)
    model = load_model(tmp_path / "run")
    assert not model.training and model.cifarlab_classes[3] == "cat"
    data = load_cifar("cifar10", fake_data, download=False, val_size=50)
    logits = predict_logits(model, data.test_images, model.cifarlab_mean, model.cifarlab_std)
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
    assert m["epochs"] == 3 and m["best_epoch"] == 1
    assert "early stop" in (tmp_path / "run" / "train.log").read_text()


def test_without_validation_split_the_last_epoch_is_kept(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path, val_size=0, epochs=2), quiet=True)
    assert m["best_epoch"] == 2 and m["best_val_acc"] is None


def test_bf16_autocast_on_the_cpu(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path, amp="bf16"), quiet=True)
    assert m["epochs"] == 2 and m["test_loss"] < 10
    assert "precision bfloat16" in (tmp_path / "run" / "train.log").read_text()


def test_ema_mixup_cutout_and_adamw_train(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path, ema_decay=0.9, mixup_alpha=0.4, cutout=8,
                          optimizer="adamw", lr=1e-3, rotation=10,
                          color_jitter=(0.2, 0.2, 0.2, 0.1)), quiet=True)
    assert m["epochs"] == 2 and m["test_loss"] < 10


def test_a_diverging_loss_stops_the_run(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path), quiet=True)
    t.model.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    with pytest.raises(TrainingError, match="became nan in epoch 1.*Lower --lr"):
        t.fit()


def test_a_run_folder_is_never_reused(fake_data, tmp_path):
    train(tiny_config(fake_data, tmp_path), quiet=True)
    with pytest.raises(Exception, match="already holds a run"):
        train(tiny_config(fake_data, tmp_path), quiet=True)


def test_learning_rate_schedules():
    cfg = make_config("fast", epochs=10, warmup_epochs=2, schedule="onecycle")
    assert [lr_factor(cfg, t) for t in (0, 1, 2, 6, 10)] == [0, 0.5, 1, 0.5, 0]
    cos = make_config("seed", t_max=100, epochs=300)
    assert lr_factor(cos, 0) == 1 and lr_factor(cos, 50) == pytest.approx(0.5)
    assert lr_factor(cos, 100) == pytest.approx(0) and lr_factor(cos, 200) == pytest.approx(1)
    step = make_config("fast", schedule="step", step_size=3, gamma=0.1, warmup_epochs=0)
    assert lr_factor(step, 2.9) == 1 and lr_factor(step, 3) == pytest.approx(0.1)
    flat = make_config("fast", schedule="constant", warmup_epochs=4)
    assert lr_factor(flat, 1) == 0.25 and lr_factor(flat, 8) == 1


def test_optimizer_groups_spare_norms_and_biases_when_asked(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, decay_norm_and_bias=False), quiet=True)
    decay, no_decay = t.optimizer.param_groups
    assert all(p.ndim > 1 for p in decay["params"]) and no_decay["weight_decay"] == 0
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["params"]
    assert torch.is_tensor(decay["params"][0])


def test_alternating_flip_flips_each_image_the_other_way_each_epoch(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, alternate_flip=True), quiet=True)
    seen = []
    t.augment = lambda images, g, flips: seen.append(flips) or torch.zeros(
        len(images), 3, 32, 32)
    t.train_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    t.optimizer = torch.optim.SGD(t.train_model.parameters(), lr=0.1)
    t.scheduler = torch.optim.lr_scheduler.LambdaLR(t.optimizer, lambda s: 1.0)
    t.order_gen.manual_seed(0)
    t.train_epoch(1)
    first = torch.cat(seen)
    seen.clear()
    t.order_gen.manual_seed(0)  # same order again, to compare image by image
    t.train_epoch(2)
    assert torch.equal(torch.cat(seen), ~first) and 0.3 < first.float().mean() < 0.7


def test_test_time_augmentation(fake_data, tmp_path):
    from cifarlab.evaluate import tta_logits

    t = Trainer(tiny_config(fake_data, tmp_path), quiet=True)
    model = t.model.eval()
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


def test_norm_and_bias_learning_rate_scale_keeps_their_decay_per_step(fake_data, tmp_path):
    t = Trainer(tiny_config(fake_data, tmp_path, norm_bias_lr_scale=64, weight_decay=1e-3,
                            decay_norm_and_bias=True, warmup_epochs=0, schedule="constant"),
                quiet=True)
    weights, others = t.optimizer.param_groups
    assert others["lr"] == pytest.approx(64 * weights["lr"])
    assert others["lr"] * others["weight_decay"] == pytest.approx(weights["lr"] * 1e-3)
