"""Heatmaps: Grad-CAM of a model trained on images whose class lies in one quadrant peaks in
that quadrant; `predict --explain` writes them, `--layer` chooses by name, the report's
mistakes carry them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifarlab.cli import main
from cifarlab.data import DataSplits
from cifarlab.errors import CifarlabError
from cifarlab.inference.heatmaps import grad_cam, overlay
from cifarlab.inference.loading import load_model
from cifarlab.jobs.training_run import run_training
from cifarlab.runs import make_config

pytestmark = pytest.mark.xdist_group("heatmaps")  # one worker builds the shared fixture


def quadrant_images(labels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Smooth grey noise everywhere; in the top-left quadrant, stripes whose direction is the
    class (horizontal or vertical): only that quadrant decides."""
    field = torch.from_numpy(rng.normal(0, 1, (len(labels), 1, 4, 4))).float()
    x = 128 + 30 * torch.nn.functional.interpolate(field, size=(32, 32), mode="bicubic",
                                                   align_corners=False)
    stripes = torch.tensor([1.0 if (i // 2) % 2 else -1.0 for i in range(16)])
    for n, y in enumerate(labels):
        pattern = stripes[:, None].expand(16, 16) if y == 0 else stripes[None, :].expand(16, 16)
        x[n, 0, 2:14, 2:14] = 128 + 90 * pattern[2:14, 2:14]
    return x.expand(-1, 3, -1, -1).clamp(0, 255).round().to(torch.uint8).contiguous()


@pytest.fixture(scope="session")
def quadrant_run(tmp_path_factory):
    rng = np.random.default_rng(0)
    y, ty = np.arange(1000) % 2, np.arange(200) % 2
    empty = torch.empty(0, 3, 32, 32, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    data = DataSplits(quadrant_images(y, rng), torch.from_numpy(y), *empty,
                      quadrant_images(ty, rng), torch.from_numpy(ty), ["horizontal", "vertical"],
                      ((0.5,) * 3, (0.25,) * 3))
    run = tmp_path_factory.mktemp("quadrant") / "run"
    cfg = make_config("fast", epochs=3, batch_size=100, val_size=0, report=False,
                      run_dir=str(run), device="cpu")
    metrics = run_training(cfg, data=data, quiet=True)
    assert metrics["test_top1"] > 95  # the task is learnt
    return run, data


def test_the_heatmap_peaks_in_the_quadrant_that_decides(quadrant_run):
    run, data = quadrant_run
    model = load_model(run)
    maps, layer = grad_cam(model, data.test_images, data.test_labels)
    assert layer == "groups" and maps.shape == (200, 32, 32)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    quadrants = [maps[:, :16, :16], maps[:, :16, 16:], maps[:, 16:, :16], maps[:, 16:, 16:]]
    means = [float(q.mean()) for q in quadrants]
    # Measured: 0.68 in the top-left quadrant, 0.08-0.41 in the others; every peak in it.
    assert means[0] > 1.3 * max(means[1:]), means
    peaks = maps.flatten(1).argmax(1)
    in_quadrant = ((peaks // 32 < 16) & (peaks % 32 < 16)).float().mean()
    assert in_quadrant > 0.8, float(in_quadrant)


def test_a_layer_by_name_and_a_wrong_name(quadrant_run):
    run, data = quadrant_run
    model = load_model(run)
    maps, layer = grad_cam(model, data.test_images[:4], layer="groups.1")
    assert layer == "groups.1" and maps.shape == (4, 32, 32)
    with pytest.raises(CifarlabError, match="no layer 'nope'"):
        grad_cam(model, data.test_images[:4], layer="nope")
    with pytest.raises(CifarlabError, match="gives no feature map"):
        grad_cam(model, data.test_images[:4], layer="head")
    picture = overlay(data.test_images[0].numpy().transpose(1, 2, 0), maps[0].numpy(), size=64)
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8


def test_predict_explain_writes_a_heatmap_per_readable_image(quadrant_run, tmp_path, capsys):
    from PIL import Image

    run, data = quadrant_run
    for i in range(2):
        Image.fromarray(data.test_images[i].numpy().transpose(1, 2, 0)).resize(
            (96, 96)).save(tmp_path / f"img{i}.png")
    (tmp_path / "broken.png").write_bytes(b"no")
    code = main(["predict", str(run), str(tmp_path / "img0.png"), str(tmp_path / "img1.png"),
                 str(tmp_path / "broken.png"), "--explain", str(tmp_path / "heat"), "--json"])
    assert code == 1  # the broken file
    out = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "heat").iterdir()) == [
        "img0.heatmap.png", "img1.heatmap.png"]
    assert Image.open(tmp_path / "heat" / "img0.heatmap.png").size == (128, 128)
    assert "heatmaps (Grad-CAM of layer groups)" in out.err and '"heatmap"' in out.out
    assert main(["predict", str(run), str(tmp_path / "img0.png"), "--layer", "groups"]) == 2


def test_the_reports_mistakes_carry_heatmaps(trained_run):
    from cifarlab.reporting.report import mistake_heatmaps

    model = load_model(trained_run)
    images = torch.randint(0, 255, (30, 3, 32, 32), dtype=torch.uint8)
    probs = torch.softmax(torch.randn(30, len(model.classes)), 1).numpy()
    labels = (probs.argmax(1) + 1) % len(model.classes)  # every image a mistake
    overlays = mistake_heatmaps(model, images, labels, probs)
    assert len(overlays) == 24 and all(o.shape == (64, 64, 3) for o in overlays.values())
