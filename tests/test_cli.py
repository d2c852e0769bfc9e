"""The `cifarlab` command end to end: help, errors as one line, train then evaluate."""

import json
import os
import subprocess
import sys

import pytest

from cifarlab.cli import main
from cifarlab.runs import RunFolder, open_checkpoint
from conftest import tiny_args


def test_help_lists_every_option_with_its_default():
    out = subprocess.run([sys.executable, "-m", "cifarlab", "train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--model", "--epochs", "--batch-size", "--lr", "--seed", "--device",
                 "--data-dir", "--run-dir", "--dataset", "--config", "--preset",
                 "--label-smoothing", "--mixup-alpha", "--cutout", "--ema-decay", "--amp"):
        assert flag in out
    flat = " ".join(out.split())  # argparse wraps the help text
    assert "(default: fastnet)" in flat and "(default: muon)" in flat  # the default preset's


def test_entry_point_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "cifarlab")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in out and "evaluate" in out


def test_train_then_evaluate_end_to_end(fake_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *tiny_args(fake_data, run)]) == 0
    out = capsys.readouterr().out
    assert "epoch   1/2" in out and "test accuracy" in out and "airplane" in out
    assert (run / "best.pt").is_file() and (run / "metrics.json").is_file()

    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy: top-1" in out and "confusion matrix" in out and "truck" in out
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["top1"] == pytest.approx(json.loads((run / "metrics.json").read_text())
                                            ["test_top1"])


def test_train_from_a_preset_with_options(fake_data, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "tutorial", "--data-dir", str(fake_data), "--run-dir",
                 str(run), "--epochs", "1", "--val-size", "50", "--no-report", "--quiet"]) == 0
    cfg = RunFolder(run).settings()
    assert (cfg.preset, cfg.model, cfg.epochs, cfg.batch_size) == ("tutorial", "tutorial-cnn",
                                                                   1, 64)


def test_train_from_config_file(fake_data, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"preset: tutorial\nepochs: 1\ndata_dir: {fake_data}\nval_size: 50\n")
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "r"),
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["model"] == "tutorial-cnn" and saved["epochs"] == 1


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "resnet50"], "unknown model 'resnet50' (closest: tv:resnet50"),
    (["train", "--model", "tv:resnet5"], "torchvision has no model 'resnet5'; closest: "),
    (["train", "--epochs", "0"], "epochs must be at least 1"),
    (["evaluate", "nowhere"], "nowhere does not exist"),
    (["evaluate", "nowhere", "--tta-share", "2"], "--tta-share must be in [0, 1]"),
    (["train", "--tta-share", "-0.1"], "tta_share must be in [0, 1]"),
])
def test_errors_are_one_clear_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert "not found under" in capsys.readouterr().err


def test_models_and_presets_listings(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet18-tv" in out and "cifarlab models --source tv|timm" in out
    assert main(["models", "--source", "tv", "--filter", "mobilenet_v"]) == 0
    assert capsys.readouterr().out.split() == ["tv:mobilenet_v2", "tv:mobilenet_v3_large",
                                               "tv:mobilenet_v3_small"]
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "fast (default)" in out and "seed:" in out and "--model resnet18-tv" in out


def test_normalisation_options_take_three_numbers(fake_data, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *tiny_args(fake_data, run, epochs=1), "--mean", "0.5", "0.5", "0.5",
                 "--std", "0.25", "0.25", "0.25", "--quiet"]) == 0
    cfg = open_checkpoint(run).config
    assert cfg.mean == (0.5,) * 3 and cfg.std == (0.25,) * 3


def test_low_res_size_takes_one_size_or_one_per_epoch(fake_data, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *tiny_args(fake_data, run, epochs=3), "--low-res-epochs", "2",
                 "--low-res-size", "16", "24", "--quiet"]) == 0
    assert RunFolder(run).settings().low_res_size == (16, 24)


def test_only_bench_takes_options_after_a_double_dash(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--", "--epochs", "1"])
    assert "only `cifarlab bench` takes options after `--`" in capsys.readouterr().err


def test_presets_list_their_network_part_apart(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    fast = out.split("\n90:")[0]
    assert "network (left out when you name another --model): --model fastnet" in fast
    assert "--low-res-epochs 1" in fast.split("recipe:")[0] and "--optimizer muon" in fast
