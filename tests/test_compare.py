"""`cifarlab compare`: runs side by side in one page, refused when they cannot be compared."""

import json
import re
import shutil

import pytest

from cifarlab import train
from cifarlab.cli import main
from cifarlab.reporting.compare import class_changes, compare_runs, differing_settings, load_run
from conftest import TINY, images_in_chromium, needs_chromium


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """A second finished TINY run on the same fake data as `trained_run`, other settings."""
    from conftest import write_fake_cifar

    root = tmp_path_factory.mktemp("other")
    write_fake_cifar(root / "data")
    train(data_dir=str(root / "data"), run_dir=str(root / "run"), quiet=True,
          **{**TINY, "epochs": 2, "lr": 0.02, "label_smoothing": 0.1})
    return root / "run"


def test_two_runs_side_by_side(trained_run, other_run, tmp_path):
    out = compare_runs([trained_run, other_run], tmp_path / "c.html")
    page = out.read_text()
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (trained_run, other_run))
    assert f"{b['test_top1'] - a['test_top1']:+.2f}" in page  # the change in top-1
    assert f"{b['test_macro_f1'] - a['test_macro_f1']:+.2f}" in page  # and in macro-F1
    assert f"<td>{b['test_ece']:.2f}%</td>" in page and "F1 per class" in page
    f1 = a["class_scores"]["cat"]["f1"]
    assert f"<tr><td>cat</td><td>{f1:.2f}%</td>" in page
    settings = dict(differing_settings([load_run(trained_run), load_run(other_run)]))
    assert settings["lr"] == [TINY["lr"], 0.02] and settings["epochs"] == [3, 2]
    assert "run_dir" not in settings and "data_dir" in settings
    assert page.count("<img") == 3 and "Change in the confusion matrix" in page
    gained, lost = class_changes([load_run(trained_run), load_run(other_run)])
    change = {c: b["per_class"][c] - a["per_class"][c] for c in a["per_class"]}
    assert gained[0][3] == max(change.values()) and lost[0][3] == min(change.values())


def test_three_runs_have_no_confusion_change(trained_run, other_run, tmp_path, capsys):
    third = tmp_path / "third"
    shutil.copytree(trained_run, third)
    assert main(["compare", str(trained_run), str(other_run), str(third), "-o",
                 str(tmp_path / "c.html")]) == 0
    page = (tmp_path / "c.html").read_text()
    assert page.count("<img") == 2 and len(re.findall(r"<tr><td>third", page)) == 1


def test_runs_that_cannot_be_compared_are_refused(trained_run, tmp_path, capsys):
    other = tmp_path / "c100"
    shutil.copytree(trained_run, other)
    config = json.loads((other / "config.json").read_text())
    metrics = json.loads((other / "metrics.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "dataset": "cifar100"}))
    (other / "metrics.json").write_text(json.dumps({**metrics, "classes": ["a"] * 100}))
    assert main(["compare", str(trained_run), str(other)]) == 2
    assert "compare runs of one dataset and one class list" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained_run, unfinished)
    (unfinished / "metrics.json").unlink()
    assert main(["compare", str(trained_run), str(unfinished)]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert main(["compare", str(trained_run), str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert main(["compare", str(trained_run)]) == 2


@needs_chromium
def test_compare_page_loads_every_image_in_headless_chromium(trained_run, other_run, tmp_path):
    page = compare_runs([trained_run, other_run], tmp_path / "c.html")
    images = images_in_chromium(page, tmp_path / "page.png")
    assert [i["alt"] for i in images] == ["curves.png", "per_class.png", "confusion_change.png"]
    assert all(i["ok"] for i in images), images


def test_no_output_overwrites_a_file_of_a_run_or_a_package(trained_run, other_run, tmp_path,
                                                           capsys):
    """compare's page and export's file never go over a run's or a package's files."""
    from cifarlab.inference.package import export_package

    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / "calibration.json").unlink()  # a file a run writes, not there now
    package = tmp_path / "pkg"
    export_package(trained_run, package)
    before = {p: p.read_bytes() for p in [*run.iterdir(), *package.iterdir()] if p.is_file()}
    runs = [str(trained_run), str(other_run)]
    for command in (["export", str(run), "--format", "torchscript", "-o", str(run / "best.pt")],
                    ["export", str(run), "--format", "torchscript", "-o",
                     str(package / "README.md")],
                    ["compare", *runs, "-o", str(run / "metrics.json")],
                    ["compare", *runs, "-o", str(run / "calibration.json")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "; write the output elsewhere (-o PATH)" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert not (run / "calibration.json").exists()
    # each command's own file is still its to write
    assert main(["export", str(run), "--format", "torchscript", "-o",
                 str(run / "model.torchscript.pt")]) == 0
    assert main(["compare", *runs, "-o", str(run / "compare.html")]) == 0
