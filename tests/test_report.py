import base64
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from cifarlab import train
from cifarlab.cli import main
from cifarlab.reporting import plots
from cifarlab.reporting.report import PICTURES, confused_pairs
from cifarlab.runs import RunFolder
from conftest import TINY, images_in_chromium, needs_chromium


def test_training_writes_every_picture_and_the_page(trained_run):
    for name in PICTURES:
        with Image.open(trained_run / name) as img:
            img.verify()  # a complete, valid PNG
            assert img.format == "PNG"
    with Image.open(trained_run / "predictions.png") as img:
        assert img.width >= 8 * 96  # 32x32 thumbnails upscaled at least 3x
    page = (trained_run / "report.html").read_text()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert f"{metrics['test_top1']:.2f}%" in page and f"{metrics['test_top5']:.2f}%" in page
    for text in ("Per class", "Most confused pairs", "Configuration", "airplane",
                 "training time", "weights tested"):
        assert text in page
    assert "src='http" not in page and "src=\"http" not in page  # self-contained
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(embedded) == len(PICTURES)
    for data in embedded:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_command_redraws_a_run(trained_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    for name in [*PICTURES, "report.html"]:
        (run / name).unlink()
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert all((run / name).is_file() for name in [*PICTURES, "report.html"])
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    # a model package holds what it shares: its report goes beside it
    from cifarlab.inference.package import export_package

    package = tmp_path / "pkg"
    export_package(trained_run, package)
    shared = sorted(p.name for p in package.iterdir())
    data = str(RunFolder(trained_run).settings().data_dir)
    assert main(["report", str(package), "--data-dir", data]) == 0
    assert f"{tmp_path / 'pkg-report' / 'report.html'}" in capsys.readouterr().out
    assert sorted(p.name for p in package.iterdir()) == shared
    assert all((tmp_path / "pkg-report" / name).is_file() for name in PICTURES
               if name != "curves.png")  # a package keeps no epoch rows


def test_a_failing_report_loses_nothing(fake_data, tmp_path, monkeypatch):
    import cifarlab.reporting.report

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(cifarlab.reporting.report, "write_report", broken)
    m = train(data_dir=str(fake_data), run_dir=str(tmp_path / "run"), quiet=True,
              **{**TINY, "report": True})
    assert "test_top1" in m and (tmp_path / "run" / "best.pt").is_file()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "report not written (RuntimeError: no fonts)" in log and "cifarlab report" in log


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    confusion = [[50, 3, 7], [10, 40, 0], [1, 2, 47]]
    pairs = confused_pairs(confusion, ["a", "b", "c"], top=2)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("b", "a", 10),
                                                                       ("a", "c", 7)]
    assert pairs[0]["share"] == pytest.approx(20.0)


def test_mistakes_shows_the_most_confident_errors_first():
    images = np.zeros((4, 3, 32, 32), np.uint8)
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    fig = plots.plot_mistakes(images, labels, probs, ["cat", "dog"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["true: cat\npredicted: dog 80%", "true: dog\npredicted: cat 60%"]


def test_many_classes_show_the_extremes_not_every_bar():
    per_class = {f"class{i}": float(i) for i in range(100)}
    ax = plots.plot_per_class(per_class).axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert len(names) == 20 and names[0] == "class0" and names[-1] == "class99"
    assert "10 worst and 10 best of 100" in ax.get_title()
    conf = plots.plot_confusion(np.eye(100, dtype=int) * 5, list(per_class))
    assert not conf.axes[0].texts  # no unreadable counts in a 100x100 grid


@needs_chromium
def test_report_page_loads_every_image_in_headless_chromium(trained_run, tmp_path):
    images = images_in_chromium(trained_run / "report.html", tmp_path / "page.png")
    assert sorted(i["alt"] for i in images) == sorted(PICTURES.values())
    assert all(i["ok"] for i in images), images


def test_every_value_on_the_page_is_escaped(tmp_path):
    """Class names, the run's name and settings come from users' folders and files: the page
    shows them as text, never as markup."""
    import torch

    from cifarlab.metrics import compute_metrics
    from cifarlab.reporting.report import RunResults, render_html
    from cifarlab.runs import make_config

    classes = ["<script>alert(1)</script>", "b&w"]
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    metrics = compute_metrics(logits, torch.tensor([0, 1, 1]), classes)
    png = tmp_path / "curves.png"
    png.write_bytes(b"\x89PNG fake")
    results = RunResults("<run>", make_config("fast", run_dir="<dir>"), {}, [])
    page = render_html(results, {**metrics, "split": "test"}, {"curves.png": png})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "b&amp;w" in page and "cifarlab report: &lt;run&gt;" in page
    assert "&lt;dir&gt;" in page and base64.b64encode(b"\x89PNG fake").decode() in page
