"""The trained CIFAR-10 models that come with the package (inference/bundled.py): found by name
everywhere a model is taken, used by `predict` and `demo` without one, listed by `cifarlab
models`, loadable through torch.hub; their cards' figures hold on the real test set."""

import json
import re
from pathlib import Path

import pytest
import torch

import cifarlab
from cifarlab.cli import main
from cifarlab.inference.bundled import NAMES, bundled_models, bundled_path
from cifarlab.runs.package import package_config, package_metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"  # CIFAR-10 test images 0, 1 and 3


def test_every_bundled_model_is_installed_small_and_calibrated():
    assert [m["name"] for m in bundled_models()] == list(NAMES)
    total = 0
    for name in NAMES:
        own = package_config(bundled_path(name))
        metrics = package_metrics(bundled_path(name))
        assert own["weights_dtype"] == "bfloat16" and own["temperature"] > 0
        assert own["settings"]["data_dir"] is None  # nothing of the machine it was made on
        assert metrics["calibration"]["temperature"] == own["temperature"]
        assert metrics["test_ece"] < metrics["calibration"]["before"]["ece"]
        total += sum(f.stat().st_size for f in bundled_path(name).iterdir())
    assert total < 6e6  # what the wheel grows by


def test_load_model_by_name_gives_the_calibrated_classifier():
    model = cifarlab.load_model("cifar10-fast")
    assert model.classes[3] == "cat" and model.temperature == pytest.approx(
        package_config(bundled_path("cifar10-fast"))["temperature"])
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = cifarlab.load_model("cifar10-fast", calibrated=False)(x)
    assert torch.allclose(model(x), plain / model.temperature)


def test_predict_without_a_model_uses_the_best_bundled_one(capsys):
    photos = [str(EXAMPLES / n) for n in ("test0000-cat.jpg", "test0001-ship.jpg",
                                          "test0003-airplane.jpg")]
    assert main(["predict", *photos, "--json"]) == 0
    out = capsys.readouterr()
    assert f"using the bundled model {NAMES[0]}" in out.err
    tops = [json.loads(line)["top"][0]["class"] for line in out.out.splitlines()]
    assert tops == ["cat", "ship", "airplane"]
    # named, the smaller one; and a run folder named first is still a model, not an image
    assert main(["predict", "cifar10-fast", photos[1]]) == 0
    assert "using the bundled" not in capsys.readouterr().err


def test_a_missing_model_or_no_images_is_one_clear_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "no-such-run"), str(EXAMPLES / "test0000-cat.jpg")]
                ) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", "cifar10-94"]) == 2
    assert "give the images to classify after cifar10-94" in capsys.readouterr().err


def test_models_lists_the_bundled_ones_with_their_accuracy(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for m in bundled_models():
        assert re.search(rf"{m['name']}\s+preset {m['preset']}\s+test top-1 "
                         rf"{m['test_top1']:.2f}%", out)


def test_demo_without_a_model_serves_the_best_bundled_one(monkeypatch):
    import cifarlab.jobs.demo as demo

    served = []
    monkeypatch.setattr(demo, "serve", lambda source, **kw: served.append(source))
    assert main(["demo"]) == 0
    assert served == [NAMES[0]]


def test_torch_hub_loads_them_from_the_repository():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for entry, name in (("cifar10_fast", "cifar10-fast"), ("cifar10_94", "cifar10-94")):
        model = torch.hub.load(str(ROOT), entry, source="local", trust_repo=True)
        assert torch.equal(model(x), cifarlab.load_model(name)(x))


def card_top1(name: str) -> float:
    """The test accuracy the model card states (its front matter's model-index)."""
    card = (bundled_path(name) / "README.md").read_text()
    return float(re.search(r"- type: accuracy\n\s+value: ([\d.]+)", card).group(1))


@pytest.mark.parametrize("name", NAMES)
def test_the_cards_test_accuracy_holds_on_the_real_test_set(name, real_data):
    """Computed in float32 (the card's figures too), so the same on every CPU kind, in the
    batches a run's test takes on the CPU (the test views go to the least sure of each)."""
    from cifarlab.data import load_data
    from cifarlab.models import predict_logits
    from cifarlab.runtime import eval_batch_size

    model = cifarlab.load_model(name)
    images, labels = load_data("cifar10", real_data, download=False, val_size=0).split("test")
    batch = eval_batch_size(None, torch.device("cpu"))
    top1 = 100 * (predict_logits(model, images, batch).argmax(1) == labels).double().mean().item()
    assert top1 == pytest.approx(card_top1(name), abs=0.05)


def test_a_bundled_models_report_goes_beside_the_user_not_into_the_package():
    from cifarlab.reporting.report import report_folder

    assert report_folder("cifar10-fast") == Path("cifar10-fast-report")
