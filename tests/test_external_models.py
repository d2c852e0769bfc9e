"""Models by name from torchvision and timm, pretrained and local weights, the image size."""

import os
import subprocess
import sys
import urllib.error

import pytest
import torch
from torch import nn

from cifarlab import load_model, train
from cifarlab.data import DATASETS
from cifarlab.errors import ConfigError, ModelError
from cifarlab.inference.export import export_model
from cifarlab.models import IMAGENET_STATS, create_model, find_head, list_source_models
from cifarlab.runs import make_config
from cifarlab.training.optim import build_optimizer
from conftest import TINY, tiny_trainer

timm = pytest.importorskip("timm", reason="timm models need the timm extra (in dev)")


def head_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a ResNet's classifier receives for images x."""
    seen = []
    hook = model.fc.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    return seen[0]


def body_state(model: nn.Module, head: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")}


@pytest.mark.parametrize("name", ["tv:efficientnet_b0", "tv:mobilenet_v2", "timm:resnet18"])
def test_another_librarys_model_trains_on_cifar_shaped_data(fake_data, tmp_path, name):
    settings = {**TINY, "model": name, "model_args": {}, "data_dir": str(fake_data),
                "run_dir": str(tmp_path / "run"), "epochs": 1, "batch_size": 50}
    trainer = tiny_trainer(fake_data, model=name, model_args={}, batch_size=50, epochs=4,
                           lr=0.02)
    x, y = trainer.data.train_images[:50], trainer.data.train_labels[:50]
    losses = [trainer.step(x, y, None, trainer.nets.train_model)[0].item() for _ in range(15)]
    # Gradients reach the weights: it fits the batch. Single steps are noisy at this size (float
    # rounding alone changes which ones spike), so the best of the last five steps is judged.
    assert min(losses[-5:]) < 0.5 * losses[0]
    metrics = train(**settings)  # and the whole run: train, checkpoint, test, reload, export
    model = load_model(tmp_path / "run")
    assert model.net.get_submodule(find_head(model.net, 10)).weight.shape[0] == 10
    assert metrics["model"] == name and 0 <= metrics["test_top1"] <= 100
    assert export_model(tmp_path / "run", "torchscript")["max_abs_diff"] < 1e-4


def test_unknown_names_get_the_closest_ones():
    with pytest.raises(ModelError, match=r"no model 'resnet5'; closest: tv:resnet50"):
        create_model("tv:resnet5")
    with pytest.raises(ModelError, match=r"closest: timm:resnet50"):
        create_model("timm:resnet5")
    with pytest.raises(ConfigError, match=r"unknown model 'fasnet' \(closest: fastnet"):
        make_config(model="fasnet")


def test_model_lists_filter_by_pattern():
    assert "efficientnet_b0" in list_source_models("tv", "efficientnet")
    assert all(n.startswith("convnext") for n in list_source_models("tv", "convnext*"))
    assert "resnet18" in list_source_models("timm", "resnet1?")


def test_a_saved_state_dict_loads_all_but_the_head(tmp_path):
    source = create_model("tv:resnet18", 10).eval()
    for fmt in ("pth", "safetensors"):
        path = tmp_path / f"w.{fmt}"
        if fmt == "pth":
            torch.save({"state_dict": source.state_dict()}, path)  # a wrapped state dict
        else:
            from safetensors.torch import save_file

            save_file(source.state_dict(), str(path))
        loaded = create_model("tv:resnet18", 10, weights=path).eval()
        assert all(torch.equal(v, body_state(source, "fc")[k])
                   for k, v in body_state(loaded, "fc").items())
        assert not torch.equal(loaded.fc.weight, source.fc.weight)  # a new head
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(head_input(loaded, x), head_input(source, x))  # same features


def test_another_architectures_weights_are_refused_by_key(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(create_model("tv:resnet18", 10).state_dict(), path)
    with pytest.raises(ModelError, match=r"missing in the file: layer1\.2\.bn1\.bias"):
        create_model("tv:resnet34", 10, weights=path)
    with pytest.raises(ModelError, match=r"missing in the file: features\.0\.0\.weight.*"
                                         r"not in the model: bn1\.bias"):
        create_model("tv:mobilenet_v2", 10, weights=path)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creates the file when unpickled


def test_a_pickle_payload_in_a_weights_file_runs_no_code(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"fc.weight": Payload(marker)}, path)
    with pytest.raises(ModelError, match="without running any code"):
        create_model("tv:resnet18", 10, weights=path)
    assert not marker.exists()


def no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def test_torchvision_weights_are_found_in_torch_homes_cache(tmp_path, monkeypatch):
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    url = tvm.get_model_weights("resnet18").DEFAULT.url
    imagenet = create_model("tv:resnet18", 1000)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cache / url.rsplit("/", 1)[1])
    model = create_model("tv:resnet18", 10, pretrained=True)
    assert model.fc.out_features == 10
    assert all(torch.equal(v, body_state(imagenet, "fc")[k])
               for k, v in body_state(model, "fc").items())


def test_missing_pretrained_weights_say_where_the_file_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ModelError, match=f"put https://.*resnet18-f37072fd.pth at {expected}"):
        create_model("tv:resnet18", 10, pretrained=True)
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelError, match=r"timm:resnet18 from timm/resnet18.*Hugging Face .*"
                                         r"download https://huggingface.co/timm/resnet18.*"
                                         r"model.safetensors and pass --weights PATH"):
        create_model("timm:resnet18", 10, pretrained=True)
    with pytest.raises(ModelError, match="has no pretrained weights"):
        create_model("fastnet", 10, pretrained=True)


def test_pretrained_runs_normalise_with_imagenets_statistics():
    cifar = DATASETS["cifar10"].stats

    def normalisation(**kw):
        cfg = make_config(model="tv:resnet18", **kw).resolved("data", cifar)
        return cfg.mean, cfg.std

    assert normalisation(pretrained=True) == IMAGENET_STATS
    assert normalisation(pretrained=True, mean=(0.5,) * 3)[0] == (0.5,) * 3
    assert normalisation() == cifar


def test_the_network_sees_the_image_size_everywhere(fake_data, tmp_path):
    seen = []
    run = tmp_path / "run"
    train(**{**TINY, "epochs": 1, "image_size": 40, "data_dir": str(fake_data),
             "run_dir": str(run)})
    model = load_model(run)
    model.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    model(torch.rand(2, 3, 32, 32))  # CIFAR-sized input, resized inside
    assert seen == [40] and model.image_size == 40
    meta = export_model(run, "torchscript")["metadata"]
    assert meta["image_size"] == 40 and "(N, 3, 40, 40)" in meta["input"]


def test_a_vit_at_the_wrong_size_is_one_clear_error(fake_data, tmp_path):
    with pytest.raises(ModelError, match=r"tv:vit_b_16 cannot take 32x32 images .*224"):
        train(**{**TINY, "model": "tv:vit_b_16", "model_args": {}, "data_dir": str(fake_data),
                 "run_dir": str(tmp_path / "run")})


def test_finetune_trains_the_pretrained_body_slower_than_the_new_head(fake_data, tmp_path):
    weights = tmp_path / "imagenet.pth"
    torch.save(create_model("tv:resnet18", 1000).state_dict(), weights)
    cfg = make_config("finetune", weights=str(weights))
    resolved = cfg.resolved("data", DATASETS["cifar10"].stats)
    assert (cfg.pretrained, cfg.image_size) == (True, 128)
    assert (resolved.mean, resolved.std) == IMAGENET_STATS
    model = create_model(cfg.model, 10, pretrained=True, weights=cfg.weights)
    rates = {}
    for group in build_optimizer(model, cfg, 10).param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    head = {id(p) for p in model.fc.parameters()}
    assert {rates[i] for i in head} == {cfg.lr}
    assert {r for i, r in rates.items() if i not in head} == {cfg.lr * 0.1}
    assert len(rates) == len(list(model.parameters()))  # every parameter in one group
    # The whole run at a small size: pretrained from the file, split groups, test, reload.
    metrics = train(preset="finetune", weights=str(weights), image_size=40, epochs=1,
                    batch_size=50, data_dir=str(fake_data), run_dir=str(tmp_path / "run"),
                    device="cpu", report=False, val_size=50)
    assert load_model(tmp_path / "run").image_size == 40 and metrics["model"] == "tv:resnet18"


def test_apple_gpus_get_float32_default_layout_and_the_cpu_fallback(monkeypatch):
    from cifarlab.runtime import amp_dtype, resolve_device, use_channels_last

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    mps = resolve_device("auto")
    assert mps.type == "mps" and amp_dtype("auto", mps) is None
    assert not use_channels_last(None, mps)
    code = "import os, cifarlab; print(os.environ['PYTORCH_ENABLE_MPS_FALLBACK'])"
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "1"  # cifarlab sets it when imported


def test_pretrained_normalisation_comes_from_the_weights_own_configuration():
    cifar = DATASETS["cifar10"].stats

    def stats(name):
        return make_config(model=name, pretrained=True).resolved("data", cifar).mean

    assert stats("timm:vit_base_patch16_224") == (0.5, 0.5, 0.5)  # timm's pretrained_cfg
    assert stats("timm:inception_v3") == (0.5, 0.5, 0.5)
    assert stats("timm:resnet18") == IMAGENET_STATS[0]
    assert stats("tv:resnet18") == IMAGENET_STATS[0]  # torchvision's weights' transforms
