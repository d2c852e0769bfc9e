"""A run's settings (runs/config.py, runs/presets.py): precedence, files, conversion, one-line
errors, presets and their network part, settings of older versions."""

from pathlib import Path

import pytest
import torch

from cifarlab.data import DATASETS
from cifarlab.errors import ConfigError
from cifarlab.models import IMAGENET_STATS, create_model
from cifarlab.runs import PRESETS, Config, make_config
from cifarlab.runtime import eval_batch_size
from conftest import tiny_trainer


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


@pytest.mark.parametrize("text, message", [
    ('run_dir = {a = 1}', "run_dir must be a string, not {'a': 1}"),
    ("epochs = true", "epochs must be a whole number, not True"),
    ("lr = false", "lr must be a number, not False"),
    ('flip = 1', "flip must be true or false, not 1"),
    ('model = 18', "model must be a string, not 18"),
    ("epochs = [3]", "epochs must be a whole number, not \\[3\\]"),
])
def test_settings_of_the_wrong_type_are_refused_before_anything_is_made(tmp_path, text,
                                                                          message):
    f = tmp_path / "c.toml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        make_config(config_file=f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_python_values_of_the_right_kind_are_taken():
    """From Python: paths for folders, NumPy's numbers for numbers."""
    import numpy as np

    cfg = make_config(data_dir=Path("/data/cifar"), run_dir=Path("runs/a"), seed=np.int64(3),
                      lr=np.float32(0.5), epochs=np.int32(2))
    assert (cfg.data_dir, cfg.run_dir, cfg.seed, cfg.epochs) == ("/data/cifar", "runs/a", 3, 2)
    assert cfg.lr == 0.5 and type(cfg.seed) is int and type(cfg.lr) is float


def test_json_files_are_read_as_json(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{\n\t"epochs": 1e0,\n\t"lr": 0.5\n}\n')  # tabs, and 1e0: JSON, not YAML
    cfg = make_config(config_file=f)
    assert (cfg.epochs, cfg.lr) == (1, 0.5)


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


def test_another_model_keeps_the_recipe_and_leaves_the_presets_network_part():
    fast, other = make_config("fast"), make_config("fast", model="resnet9")
    network = PRESETS["fast"].network.values
    assert network["model"] == "fastnet" and {"low_res_epochs", "norm_bias_lr_scale"} <= set(
        network)
    assert (fast.low_res_epochs, fast.norm_bias_lr_scale) == (1, 64.0)
    assert (other.low_res_epochs, other.norm_bias_lr_scale) == (0, 1.0)  # the base values
    for key in PRESETS["fast"].recipe:  # the recipe stays: Muon, its rates, the test views
        assert getattr(other, key) == getattr(fast, key), key
    assert make_config("fast", model="resnet9", low_res_epochs=1).low_res_epochs == 1


def test_cli_model_override_builds(fake_data):

    t = tiny_trainer(fake_data, model="resnet9", model_args={})
    reference = create_model("resnet9")
    assert type(t.nets.model) is type(reference)
    assert [p.shape for p in t.nets.model.parameters()] == [p.shape for p in
                                                            reference.parameters()]


def test_normalisation_resolves_to_the_datasets_own():
    cifar10, cifar100 = DATASETS["cifar10"].stats, DATASETS["cifar100"].stats
    fast = make_config("fast")
    assert fast.mean is None  # until a run resolves it against its data
    resolved = fast.resolved("data", cifar10)
    assert (resolved.mean, resolved.std) == cifar10 and resolved.data_dir == "data"
    c100 = make_config("fast", dataset="cifar100").resolved("data", cifar100)
    assert (c100.mean, c100.std) == cifar100
    seed = make_config("seed").resolved("data", cifar10)
    assert seed.mean == seed.std == (0.5,) * 3  # set by the preset: kept
    pretrained = make_config("finetune").resolved("data", cifar10)
    assert (pretrained.mean, pretrained.std) == IMAGENET_STATS


def test_warmup_is_a_share_of_the_run():
    assert make_config("resnet18").warmup == pytest.approx(2 / 30)
    with pytest.raises(ConfigError, match="warmup is a share of the run"):
        make_config(warmup=2)


def test_settings_saved_by_an_older_version_mean_what_they_meant():
    old = make_config("fast", epochs=4).to_dict()
    del old["warmup"], old["whiten_bias_share"]
    old.update(warmup_epochs=0.8, model_args={"widths": [32, 64, 128], "bn_momentum": 0.4})
    cfg = Config.from_dict(old)
    assert cfg.warmup == pytest.approx(0.2) and cfg.whiten_bias_share == 1.0
    assert cfg.model_args == {"bn_eps": 1e-5, "widths": [32, 64, 128], "bn_momentum": 0.4}
    old["low_res_size"] = 24  # one size, from before sizes could ramp
    assert Config.from_dict(old).low_res_size == (24,)
    # An unset normalisation meant the dataset's own: today it is the numbers.
    assert Config.from_dict(old).mean == DATASETS["cifar10"].stats[0]


def test_runs_saved_before_the_setting_keep_float32_newton_schulz():
    saved = make_config("fast").to_dict()
    del saved["muon_ns_precision"]
    assert Config.from_dict(saved).muon_ns_precision == "float32"


@pytest.mark.parametrize("sizes, message", [
    ([24, 28], "one size, or one per low-res epoch \\(3\\), not 2"),
    ([24, 40, 28], "must be in \\[8, image_size\\]"),
])
def test_low_res_sizes_that_do_not_fit_are_one_line_errors(sizes, message):
    with pytest.raises(ConfigError, match=message):
        make_config("94", low_res_size=sizes)


def test_low_res_sizes_take_one_size_or_one_per_epoch():
    with pytest.raises(ConfigError, match="low_res_epochs"):
        make_config("fast", epochs=4, low_res_epochs=5)
    one = make_config("fast", epochs=3, low_res_epochs=2, low_res_size=20)  # a lone size: all
    assert one.low_res_size == (20,) and [one.epoch_size(e) for e in (1, 2, 3)] == [20, 20, 32]
    ramp = make_config("fast", epochs=4, low_res_epochs=3, low_res_size=[16, 24, 28])
    assert [ramp.epoch_size(e) for e in range(1, 5)] == [16, 24, 28, 32]


def test_a_preset_explained_is_the_preset_that_trains(capsys):
    """`presets NAME --explain` reads the declarations training uses: its layers' values
    merged are the recipe, its resolved options are make_config's, and each derived number
    comes with its derivation."""
    from cifarlab.cli import main
    from cifarlab.runs.config import base_values
    from cifarlab.runs.explain import explain_preset, resolved_settings

    for name, preset in PRESETS.items():
        text = "\n".join(explain_preset(name))
        resolved = {**base_values(), **resolved_settings(name), "preset": name}
        assert Config(**resolved) == make_config(name), name
        for part in (*preset.parts, preset.network):
            assert part.why.split()[0] in text
    text = " ".join("\n".join(explain_preset("94")).split())  # unwrapped
    assert "1.656 x 2000 / 2000 = 1.656" in text and "0.67 x 2000 x 81 / 256^2" in text
    assert "--batch-size 512 (replaced below)" in text and "temperature 0.489" in text
    assert main(["presets", "fast", "--explain"]) == 0
    assert "lr = 1.656 x 500 / 2000 = 0.414" in " ".join(capsys.readouterr().out.split())
    assert main(["presets", "--explain"]) == 2


def test_train_help_groups_the_settings_by_their_sections(capsys):
    """--help's groups are Config's own sections (its `# ---` lines), every setting in one."""
    import re

    from cifarlab.cli import main
    from cifarlab.runs import config

    source = Path(config.__file__).read_text()
    marked = dict((f, t) for t, f in re.findall(r"# --- (.+)\n\s+(\w+):", source))
    assert marked == config.SECTIONS
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    titles = [f"settings: {t}:" for t in config.SECTIONS.values()]
    assert all(t in text for t in titles)
    where = [text.index(t) for t in titles]
    assert where == sorted(where)
    body = text[where[0]:]  # past the usage lines
    assert body.index("--val-size") < body.index(titles[1]) < body.index("--lr") \
        < body.index(titles[3])
