"""Temperature scaling: fitted on the validation split only, saved with the run, used by every
later load (predict, export, the package); refused where it would need the test set."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from cifarlab import load_model, make_config, train
from cifarlab.cli import main
from cifarlab.errors import CheckpointError
from cifarlab.inference.calibration import fit_temperature
from cifarlab.inference.package import export_package
from cifarlab.inference.predict import predict_files
from cifarlab.runs import PRESETS
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_the_fitted_temperature_undoes_overconfidence():
    g = torch.Generator().manual_seed(0)
    honest = 2 * torch.randn(20000, 10, generator=g)
    labels = torch.multinomial(honest.softmax(1), 1, generator=g).squeeze(1)
    assert fit_temperature(3 * honest, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(honest / 2, labels) == pytest.approx(0.5, rel=0.05)


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the shared trained run (it has a validation split), to calibrate."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_a_run_with_a_validation_split_fits_its_temperature_at_the_end(trained_run):
    fitted = json.loads((trained_run / "calibration.json").read_text())
    assert fitted["fitted_on"] == "val" and fitted["checkpoint"] == "best.pt"
    assert fitted["val_images"] == 50 and fitted["val_nll_after"] <= fitted["val_nll_before"]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    c = metrics["calibration"]
    assert c["temperature"] == fitted["temperature"] and c["from"] == "val"
    assert set(c["before"]) == {"ece", "nll", "brier"}
    # metrics.json's figures are the calibrated ones: its NLL is no worse than without
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = load_model(trained_run, calibrated=False)(x)
    assert torch.allclose(load_model(trained_run)(x), plain / fitted["temperature"])
    log = (trained_run / "train.log").read_text()
    assert f"with temperature {fitted['temperature']:.3f} (fitted on the validation split)" in log
    assert f"without: ECE {c['before']['ece']:.2f}%" in log
    report = (trained_run / "report.html").read_text()
    assert f"without: ECE {c['before']['ece']:.2f}%" in report


def test_calibrate_saves_a_temperature_that_every_later_load_uses(run, tmp_path, capsys):
    (run / "calibration.json").unlink()  # the one training fitted
    before = load_model(run)(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert main(["evaluate", str(run), "--calibrate"]) == 0
    said = capsys.readouterr().out
    assert "fitted on 50 validation images" in said and "(unchanged: the same predictions)" in said
    fitted = json.loads((run / "calibration.json").read_text())
    t = fitted["temperature"]
    assert fitted["fitted_on"] == "val" and fitted["checkpoint"] == "best.pt" and t > 0
    assert fitted["test_after"]["top1"] == fitted["test_before"]["top1"]
    assert fitted["val_nll_after"] <= fitted["val_nll_before"]
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_model(run, calibrated=False)(x), before)
    assert torch.allclose(load_model(run)(x), before / t)
    # predict's probabilities are the calibrated ones
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    top = next(predict_files(run, [tmp_path / "red.png"], topk=10))["top"]
    plain = load_model(run, as_trained=True, calibrated=False)
    from cifarlab.data.image_files import load_image

    logits = plain(torch.from_numpy(load_image(tmp_path / "red.png"))[None].float() / 255)
    probs = (logits / t).softmax(1)[0]
    assert top[0]["probability"] == pytest.approx(probs.max().item(), abs=1e-5)
    # and the package carries it
    export_package(run, tmp_path / "pkg")
    own = json.loads((tmp_path / "pkg" / "config.json").read_text())["cifarlab"]
    assert own["temperature"] == t
    assert torch.equal(load_model(tmp_path / "pkg")(x), load_model(run)(x))
    assert main(["evaluate", str(run)]) == 0
    assert f"temperature {t:.4f}" in capsys.readouterr().out


def test_a_run_without_a_validation_split_cannot_be_calibrated(run, capsys):
    (run / "calibration.json").unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "val_size": 0}))
    assert main(["evaluate", str(run), "--calibrate"]) == 2
    err = capsys.readouterr().err
    assert "has no validation split" in err and "without looking at the test set" in err
    assert not (run / "calibration.json").exists()


def test_a_damaged_calibration_is_one_clear_error(run):
    (run / "calibration.json").write_text(json.dumps({"checkpoint": "best.pt",
                                                      "temperature": -1}))
    with pytest.raises(CheckpointError, match="calibration.json is damaged"):
        load_model(run)
    (run / "calibration.json").write_text(json.dumps({"checkpoint": "last.pt",
                                                      "temperature": 2.0}))
    assert load_model(run).temperature is None  # fitted for other weights: not applied


def test_the_preset_temperature_applies_to_the_runs_it_was_fitted_for():
    t = PRESETS["fast"].temperature
    assert t is not None and make_config("fast").temperature == t
    assert make_config("fast", seed=3, epochs=4, val_size=5000).temperature == t
    # what sets how sure a model is, changed: no temperature (a validation split fits one)
    for other in (dict(label_smoothing=0.0), dict(tta="none"), dict(model="resnet18"),
                  dict(dataset="cifar100"), dict(mixup_alpha=0.2)):
        assert make_config("fast", **other).temperature is None, other
    assert make_config("fast", label_smoothing=0.0, temperature=0.8).temperature == 0.8
    assert make_config("tutorial").temperature is None  # not measured


def test_each_presets_temperature_is_its_development_runs_mean():
    record = json.loads((ROOT / "benchmarks" / "preset-temperatures.json").read_text())
    for name, preset in PRESETS.items():
        measured = record["presets"].get(name)
        assert preset.temperature == (measured["temperature"] if measured else None), name
    for row in record["runs"]:  # and each calibrates its checks' test sets to 2% or better
        if row["kind"] == "check":
            assert row["after"]["ece"] <= 2.0 < row["before"]["ece"], row


def test_a_run_without_a_validation_split_uses_its_presets_temperature(fake_data, tmp_path,
                                                                        capsys):
    t = PRESETS["fast"].temperature
    metrics = train(**{**TINY, "tta": "flip", "val_size": 0, "epochs": 1},
                    data_dir=str(fake_data), run_dir=str(tmp_path / "run"))
    assert metrics["calibration"]["temperature"] == t
    assert metrics["calibration"]["from"] == "preset"
    assert "with temperature" in capsys.readouterr().out
    assert not (tmp_path / "run" / "calibration.json").exists()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = load_model(tmp_path / "run", calibrated=False)(x)
    assert torch.allclose(load_model(tmp_path / "run")(x), plain / t)
    export_package(tmp_path / "run", tmp_path / "pkg")
    own = json.loads((tmp_path / "pkg" / "config.json").read_text())["cifarlab"]
    assert own["temperature"] == t and "fast preset's" in own["temperature_from"]
    assert torch.allclose(load_model(tmp_path / "pkg")(x), plain / t)
