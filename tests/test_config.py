import pytest
import torch

from cifarlab.config import PRESETS, ConfigError, make_config
from cifarlab.runtime import eval_batch_size


def test_precedence_preset_then_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "seed"\nepochs = 7\nlr = 0.05\ncolor_jitter = [0.1, 0, 0, 0]\n')
    cfg = make_config(config_file=f, lr=0.02)
    assert cfg.preset == "seed" and cfg.model == "resnet18-tv"  # from the preset in the file
    assert cfg.epochs == 7 and cfg.lr == 0.02 and cfg.color_jitter == (0.1, 0, 0, 0)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "epochs: 3\npatience: null\nflip: false\nmodel_args: {widths: [8, 8, 8]}\n"),
    (".json", '{"epochs": 3, "patience": null, "flip": false, '
              '"model_args": {"widths": [8, 8, 8]}}'),
    (".toml", 'epochs = 3\nflip = false\nmodel_args = { widths = [8, 8, 8] }\n'),
])
def test_config_files(tmp_path, suffix, text):
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    cfg = make_config("tutorial", f)
    assert cfg.epochs == 3 and cfg.flip is False and cfg.model_args == {"widths": [8, 8, 8]}


def test_strings_from_the_command_line_are_converted():
    cfg = make_config(epochs="4", lr="0.3", patience="none", flip="false",
                      color_jitter=["0.1", "0.2", "0.3", "0.1"], model_args='{"widths": [4]}')
    assert (cfg.epochs, cfg.lr, cfg.patience, cfg.flip) == (4, 0.3, None, False)
    assert cfg.color_jitter == (0.1, 0.2, 0.3, 0.1)
    assert cfg.model_args == {"widths": [4], "bn_momentum": 0.4}  # merged into the preset's


@pytest.mark.parametrize("overrides, message", [
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(epochs=-3), "epochs must be at least 1"),
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(lr=0), "lr must be greater than 0"),
    (dict(lr=-0.1), "lr must be greater than 0"),
    (dict(model="resnet50"), r"unknown model 'resnet50' \(closest: tv:resnet50, .*\); "
                             "choose one of .*resnet18"),
    (dict(preset="turbo"), "unknown preset 'turbo'; choose one of fast"),
    (dict(dataset="mnist"), "dataset must be one of cifar10, cifar100, folder"),
    (dict(label_smoothing=1.5), "label_smoothing"),
    (dict(epochs="ten"), "cannot read 'ten' as int"),
    (dict(epochs=2.5), "whole number"),
    (dict(color_jitter=[0.1]), "needs 4 values"),
    (dict(learning_rate=0.1), "unknown setting.*learning_rate.*valid: dataset"),
    (dict(eval_batch_size=0), "eval_batch_size must be at least 1"),
])
def test_bad_values_are_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**overrides)


def test_evaluation_batch_defaults_to_a_cache_sized_one_on_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert make_config().eval_batch_size is None
    assert (eval_batch_size(None, cpu), eval_batch_size(None, cuda)) == (250, 1000)
    assert eval_batch_size(make_config(eval_batch_size="64").eval_batch_size, cpu) == 64


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        make_config(config_file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        make_config(config_file=bad)
    unknown = tmp_path / "u.yaml"
    unknown.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown setting.*epoch.*u.yaml"):
        make_config(config_file=unknown)


def test_every_preset_is_a_valid_config():
    for name in PRESETS:
        assert make_config(name).preset == name


def test_seed_preset_is_the_teaching_recipe():
    c = make_config("seed")
    assert (c.model, c.lr, c.momentum, c.weight_decay, c.batch_size) == \
        ("resnet18-tv", 0.01, 0.9, 5e-4, 128)
    assert (c.schedule, c.t_max, c.patience, c.crop_padding, c.flip, c.rotation) == \
        ("cosine", 100, 10, 4, True, 10)
    assert c.color_jitter == (0.2,) * 4 and c.mean == c.std == (0.5,) * 3
    assert c.val_size != 0  # early stopping looks at validation accuracy, not the train loss


def test_muon_presets_keep_the_records_rates_per_image():
    """The record (airbench94_muon, batch 2,000): head lr 1.656 in cifarlab's terms, biases 64x,
    decay 0.004 per step. A smaller batch scales the rates with it, so that the decay per image
    and the head's step per image stay the record's; Muon's own step (0.24) is per step."""
    record = make_config("94")
    assert (record.batch_size, record.lr, record.norm_bias_lr_scale) == (2000, 1.656, 64.0)
    assert record.lr * record.weight_decay == pytest.approx(0.004)
    assert record.tta == "flip-translate" and record.tta_share == 0.2  # 2.2 views, not 6
    for name in ("fast", "94", "95"):
        c = make_config(name)
        assert c.optimizer == "muon" and (c.muon_lr, c.muon_momentum) == (0.24, 0.6)
        assert c.lr / c.batch_size == pytest.approx(record.lr / record.batch_size)
        assert c.weight_decay == record.weight_decay
        assert c.val_size == 0 and 0 < c.low_res_epochs < c.epochs


def test_model_args_merge_into_the_presets():
    """The README's own example keeps the preset's BatchNorm momentum; null removes a key."""
    cfg = make_config("fast", model_args='{"widths": [64, 128, 256]}')
    assert cfg.model_args == {"widths": [64, 128, 256], "bn_momentum": 0.4}
    cfg = make_config("fast", model_args={"bn_momentum": None})
    assert cfg.model_args == {"widths": [32, 64, 128]}


def test_another_model_starts_with_its_own_arguments(tmp_path):
    assert make_config("fast", model="resnet9").model_args == {}
    assert make_config("fast", model="fastnet").model_args["bn_momentum"] == 0.4  # same model
    f = tmp_path / "c.yaml"
    f.write_text("model: resnet9\n")
    assert make_config("fast", f, model_args={"widths": [8, 16, 32, 64]}).model_args == {
        "widths": [8, 16, 32, 64]}


def test_cli_model_override_builds(fake_data, tmp_path):
    from cifarlab.trainer import Trainer

    cfg = make_config("fast", model="resnet9", data_dir=str(fake_data), val_size=50)
    assert Trainer(cfg).nets.model.__class__.__name__ != "FastNet"


def test_normalisation_defaults_to_the_datasets_own():
    from cifarlab.config import DATASET_STATS

    assert make_config("fast").normalization() == DATASET_STATS["cifar10"]
    assert make_config("fast", dataset="cifar100").normalization() == DATASET_STATS["cifar100"]
    assert make_config("seed").normalization() == ((0.5,) * 3, (0.5,) * 3)  # set: kept


def test_warmup_is_a_share_of_the_run():
    assert make_config("resnet18").warmup == pytest.approx(2 / 30)
    with pytest.raises(ConfigError, match="warmup is a share of the run"):
        make_config(warmup=2)


def test_settings_saved_by_an_older_version_mean_what_they_meant():
    from cifarlab.config import Config

    old = make_config("fast", epochs=4).to_dict()
    del old["warmup"], old["whiten_bias_share"]
    old.update(warmup_epochs=0.8, model_args={"widths": [32, 64, 128], "bn_momentum": 0.4})
    cfg = Config.from_dict(old)
    assert cfg.warmup == pytest.approx(0.2) and cfg.whiten_bias_share == 1.0
    assert cfg.model_args == {"bn_eps": 1e-5, "widths": [32, 64, 128], "bn_momentum": 0.4}
    old["low_res_size"] = 24  # one size, from before sizes could ramp
    assert Config.from_dict(old).low_res_size == (24,)
