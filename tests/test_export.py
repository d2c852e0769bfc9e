import json

import numpy as np
import pytest
import torch

from cifarlab import load_model
from cifarlab.cli import main
from cifarlab.data import load_cifar
from cifarlab.inference.export import export_model, read_metadata, run_exported
from cifarlab.models import predict_logits

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def reference_logits(run, images, tta=None):
    """What cifarlab itself computes for uint8 images, in float32."""
    return predict_logits(load_model(run, tta=tta), images)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_real_test_images(trained_run, real_data, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    r = export_model(trained_run, fmt, out.with_suffix(".onnx" if fmt == "onnx" else ".pt"))
    images = load_cifar("cifar10", real_data, download=False, val_size=0).test_images[:500]
    got = run_exported(r["path"], images.float() / 255)  # input: RGB in [0, 1]
    want = reference_logits(trained_run, images)
    assert got.shape == (500, 10)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_has_a_dynamic_batch_and_the_class_names(trained_run, tmp_path, fmt, capsys):
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.torchscript.pt")
    assert main(["export", str(trained_run), "--format", fmt, "-o", str(out), "--tta", "flip"]
                ) == 0
    assert "max logit difference" in capsys.readouterr().out
    meta = read_metadata(out)
    assert meta["classes"][3] == "cat" and meta["tta"] == "flip" and "[0, 1]" in meta["input"]
    rng = np.random.default_rng(0)
    for n in (1, 7):
        images = torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
        got = run_exported(out, images.float() / 255)
        want = reference_logits(trained_run, images, tta="flip")
        assert got.shape == (n, 10) and torch.allclose(got, want, atol=1e-4)


def test_onnx_class_names_are_plain_metadata(trained_run, tmp_path):
    import onnx

    r = export_model(trained_run, "onnx", tmp_path / "m.onnx", check=False)
    props = {p.key: p.value for p in onnx.load(r["path"]).metadata_props}
    assert json.loads(props["classes"])[0] == "airplane"


def test_default_output_sits_in_the_run_folder(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert export_model(run, "torchscript", check=False)["path"] == str(run /
                                                                       "model.torchscript.pt")
    assert export_model(run / "best.pt", "onnx", check=False)["path"] == str(run / "best.onnx")

