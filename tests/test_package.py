"""The model package: what `cifarlab export --format package` writes, that cifarlab loads it
(from a folder or the Hugging Face cache) to the same bits as its run, that plain timm and
torchvision load their runs' packages, and that reading one never unpickles."""

import json
import pickle

import pytest
import torch
import yaml

from cifarlab import load_model, make_config
from cifarlab.cli import main
from cifarlab.data import DATASETS
from cifarlab.errors import CheckpointError
from cifarlab.inference.package import export_package
from cifarlab.models import create_model
from cifarlab.runs import RunFolder
from cifarlab.runs.checkpoint import write_checkpoint
from cifarlab.runs.values import read_config_file

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def images(n: int = 6, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def made_run(tmp_path, model: str, **kw):
    """A run folder holding an untrained `model`: enough to package (no training needed)."""
    cfg = make_config(model=model, model_args={}, tta="none", **kw).resolved(
        None, DATASETS["cifar10"].stats)
    net = create_model(model, 10)
    run = tmp_path / model.replace(":", "-")
    run.mkdir()
    RunFolder(run).write_config(cfg)
    write_checkpoint(run / "best.pt", config=cfg, classes=CLASSES, weights=net.state_dict(),
                     epoch=1)
    return run


def hub_cache(tmp_path, monkeypatch, repo: str, files: dict) -> None:
    """A Hugging Face cache holding `repo` at one commit, offline: what a download leaves."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, path in files.items():
        (snapshot / name).write_bytes(path.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_package_holds_weights_settings_and_a_model_card(trained_run, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert main(["export", str(trained_run), "--format", "package", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "max logit difference to the source: 0.00e+00" in said
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "metrics.json",
                                                      "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    own = config["cifarlab"]
    assert own["format"] == "cifarlab-package" and own["classes"] == config["label_names"]
    assert config["num_classes"] == 10 and config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert own["mean"] == config["pretrained_cfg"]["mean"] and own["settings"]["model"] == \
        "fastnet"
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "cifarlab" and "image-classification" in front["tags"]
    assert front["datasets"] == ["uoft-cs/cifar10"] and "accuracy" in front["metrics"]
    accuracy = front["model-index"][0]["results"][0]["metrics"][0]
    metrics = RunFolder(trained_run).metrics()
    assert accuracy == {"type": "accuracy", "value": round(metrics["test_top1"], 2)}
    for section in ("## Results", "| class | accuracy (recall) | precision | F1 | images |",
                    "## How to use", "## Training", "cifarlab train --config config.json",
                    "## Intended use and limitations"):
        assert section in card
    # a folder that holds something else is not overwritten
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["export", str(trained_run), "--format", "package", "-o", str(other)]) == 2
    assert "not a model package" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"


def test_a_package_predicts_the_same_bits_as_its_run(trained_run, tmp_path, capsys):
    out = tmp_path / "pkg"
    export_package(trained_run, out)
    x = images()
    for as_trained in (False, True):
        a = load_model(trained_run, as_trained=as_trained)(x)
        b = load_model(out, as_trained=as_trained)(x)
        assert torch.equal(a, b)
    data = str(RunFolder(trained_run).settings().data_dir)
    assert main(["evaluate", str(trained_run), "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(out), "--data-dir", data, "--json"]) == 0
    from_package = json.loads(capsys.readouterr().out)
    assert from_package["top1"] == from_run["top1"] and from_package["nll"] == from_run["nll"]
    # the package's settings train the same recipe again
    again = read_config_file(out / "config.json")
    assert "data_dir" not in again and "run_dir" not in again
    assert make_config(config_file=out / "config.json").epochs == \
        RunFolder(trained_run).settings().epochs


def test_reading_a_package_never_unpickles(trained_run, tmp_path, capsys):
    out = tmp_path / "pkg"
    export_package(trained_run, out)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (out / "model.safetensors").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(out)
    assert not marker.exists()
    config = json.loads((out / "config.json").read_text())
    config["cifarlab"]["format"] = "something-else"
    (out / "config.json").write_text(json.dumps(config))
    assert main(["predict", str(out), str(tmp_path)]) == 2
    assert "not a cifarlab model package" in capsys.readouterr().err


def test_a_flipped_bit_in_the_weights_is_refused(trained_run, tmp_path, capsys):
    out = tmp_path / "pkg"
    export_package(trained_run, out)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor: the file still reads, the numbers differ
    weights.write_bytes(bytes(data))
    for command in (["predict", str(out), str(tmp_path)], ["evaluate", str(out)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "damaged: its weights do not match the digest" in err and "Traceback" not in err
    # a package written before the digest (none recorded) still loads
    config = json.loads((out / "config.json").read_text())
    del config["cifarlab"]["weights_sha256"]
    (out / "config.json").write_text(json.dumps(config))
    load_model(out)


def test_a_timm_runs_package_loads_in_plain_timm(tmp_path):
    timm = pytest.importorskip("timm")
    out = tmp_path / "pkg"
    export_package(made_run(tmp_path, "timm:resnet18"), out)
    ours = load_model(out)
    x = images()
    with torch.inference_mode():
        expected = ours.net((x - ours.mean) / ours.std)
        for model in (timm.create_model(f"local-dir:{out}", pretrained=True),
                      timm.create_model("resnet18", num_classes=10, pretrained=True,
                                        pretrained_cfg_overlay={"file": str(
                                            out / "model.safetensors"), "num_classes": 10})):
            assert torch.equal(model.eval()(x.sub(ours.mean).div(ours.std)), expected)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18" and "license" not in config["pretrained_cfg"]
    assert "timm.create_model" in (out / "README.md").read_text()


def test_a_torchvision_runs_weights_load_in_plain_torchvision(tmp_path):
    import torchvision
    from safetensors.torch import load_file

    out = tmp_path / "pkg"
    export_package(made_run(tmp_path, "tv:resnet18"), out)
    plain = torchvision.models.get_model("resnet18", num_classes=10).eval()
    plain.load_state_dict(load_file(out / "model.safetensors"))
    ours = load_model(out)
    x = images()
    with torch.inference_mode():
        assert torch.equal(plain(x.sub(ours.mean).div(ours.std)), ours(x))


def test_hf_hub_names_load_a_package_from_the_cache(trained_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pkg"
    export_package(trained_run, out)
    hub_cache(tmp_path, monkeypatch, "someone/cifar-fast",
              {p.name: p for p in out.iterdir()})
    x = images()
    assert torch.equal(load_model("hf-hub:someone/cifar-fast")(x), load_model(trained_run)(x))
    with pytest.raises(CheckpointError, match="cannot fetch hf-hub:someone/missing"):
        load_model("hf-hub:someone/missing")
    with pytest.raises(CheckpointError, match="not a hub name"):
        load_model("hf-hub:no-slash")


def test_timm_hub_models_are_fine_tuned_from_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    out = tmp_path / "pkg"
    export_package(made_run(tmp_path, "timm:resnet18"), out)
    config = json.loads((out / "config.json").read_text())
    config["pretrained_cfg"].update(mean=[0.5] * 3, std=[0.5] * 3)  # as ViT's weights say
    (out / "config.json").write_text(json.dumps(config))
    hub_cache(tmp_path, monkeypatch, "someone/resnet18-cifar", {p.name: p for p in out.iterdir()})
    name = "timm:hf-hub:someone/resnet18-cifar"
    model = create_model(name, 100, pretrained=True)  # the body from the hub, a new head
    assert model.fc.out_features == 100
    plain = load_model(out).net
    assert torch.equal(model.conv1.weight, plain.conv1.weight)
    cfg = make_config(model=name, pretrained=True).resolved(None, DATASETS["cifar10"].stats)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)


def test_a_stopped_export_leaves_the_previous_package_or_none(trained_run, tmp_path,
                                                             monkeypatch):
    """Ctrl-C (or a full disk) while the card is written: no half package, no litter."""
    import cifarlab.runs.package as package

    written = tmp_path / "old"
    export_package(trained_run, written)
    before = {p.name: p.read_bytes() for p in written.iterdir()}
    real = package.publish_text

    def stop_at_the_card(path, text):
        if path.name == "README.md":
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(package, "publish_text", stop_at_the_card)
    for out in (tmp_path / "new", written):
        with pytest.raises(KeyboardInterrupt):
            export_package(trained_run, out)
    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in written.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_bf16_weights_halve_the_package_and_keep_its_predictions(trained_run, tmp_path, capsys):
    from safetensors.torch import load_file

    assert main(["export", str(trained_run), "--format", "package", "-o",
                 str(tmp_path / "full")]) == 0
    assert main(["export", str(trained_run), "--format", "package", "--bf16-weights", "-o",
                 str(tmp_path / "half")]) == 0
    stored = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert all(t.dtype == (torch.bfloat16 if t.dim() >= 2 else t.dtype) for t in stored.values())
    assert any(t.dtype == torch.float32 for t in stored.values())  # BatchNorm stays float32
    size = {n: (tmp_path / n / "model.safetensors").stat().st_size for n in ("full", "half")}
    assert size["half"] < 0.6 * size["full"]
    own = json.loads((tmp_path / "half" / "config.json").read_text())["cifarlab"]
    assert own["weights_dtype"] == "bfloat16" and own["settings"]["data_dir"] is None
    assert own["made_from"] == f"{trained_run.name}/best.pt"
    assert "stored in bfloat16" in (tmp_path / "half" / "README.md").read_text()
    x = images()
    full, half = load_model(tmp_path / "full")(x), load_model(tmp_path / "half")(x)
    assert half.dtype == torch.float32 and torch.equal(full.argmax(1), half.argmax(1))
    assert (full - half).abs().max() < 0.05 * full.abs().max()
    assert main(["export", str(trained_run), "--bf16-weights", "-o", str(tmp_path / "m.onnx")]
                ) == 2
    assert "--bf16-weights is for --format package" in capsys.readouterr().err
