"""Your own images as a dataset: ImageFolder layout, splits, statistics, cache, bad files, and
every command on such runs."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cifarlab import load_model, resume, train
from cifarlab.cli import main
from cifarlab.data import load_data
from cifarlab.data.folders import channel_stats
from cifarlab.errors import CifarlabError, DataError
from conftest import TINY, SignalAtEpochEnd, fit_in, tiny_config, tiny_trainer

CLASSES = ["apple", "kiwi", "plum"]
COLOURS = {"apple": (200, 40, 40), "kiwi": (60, 170, 50), "plum": (90, 40, 140)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLAB_CACHE_DIR", str(tmp_path / "cache"))


def write_images(folder, per_class, rng, size=(48, 40)):
    """Noisy images whose colour says the class, as PNG and JPEG, larger than 32 px."""
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 30, (*size[::-1], 3)),
                             0, 255).astype(np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.{ext}")


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "fruit"
    rng = np.random.default_rng(0)
    write_images(root / "train", 30, rng)
    write_images(root / "test", 6, rng)
    return root


def folder_run(root, run_dir, **kw):
    settings = {**TINY, "dataset": "folder", "data_dir": str(root), "run_dir": str(run_dir),
                "val_size": None, "batch_size": 16, **kw}
    return train(**settings)


def test_a_folder_trains_with_its_classes_split_and_statistics(image_folder, tmp_path):
    data = load_data("folder", image_folder)
    assert data.classes == CLASSES and data.train_images.shape[1:] == (3, 32, 32)
    assert len(data.val_labels) == 9 and len(data.train_labels) == 81  # 10%, stratified
    assert torch.bincount(data.val_labels).tolist() == [3, 3, 3]
    assert len(data.test_labels) == 18 and data.test_images.dtype == torch.uint8
    metrics = folder_run(image_folder, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert tuple(config["mean"]) == channel_stats(data.train_images)[0]  # its own statistics
    assert metrics["classes"] == CLASSES and metrics["evaluated_on"] == "test"
    assert metrics["test_top1"] > 50  # colours are easy: it learned something


def test_a_val_folder_is_used_as_it_is(image_folder):
    write_images(image_folder / "val", 4, np.random.default_rng(1))
    data = load_data("folder", image_folder)
    assert len(data.val_labels) == 12 and len(data.train_labels) == 90


def test_without_test_folder_everything_reports_validation(image_folder, tmp_path, capsys):
    shutil.rmtree(image_folder / "test")
    metrics = folder_run(image_folder, tmp_path / "run")
    out = capsys.readouterr().out
    assert "no test set" in out and "validation accuracy (no test set)" in out
    assert metrics["evaluated_on"] == "val" and "test_top1" not in metrics
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "validation split instead" in captured.err and captured.out.startswith("val accuracy")
    assert main(["report", str(tmp_path / "run")]) == 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "No test set: these are validation figures" in html and "test top-1" not in html
    assert main(["bench", "fast", "--data-dir", str(image_folder), "--out",
                 str(tmp_path / "b.json"), "--", "--dataset", "folder"]) == 2
    assert "has no test/ folder" in capsys.readouterr().err


def test_unreadable_images_are_skipped_and_counted(image_folder, capsys):
    (image_folder / "train" / "kiwi" / "broken.png").write_bytes(b"\x89PNG not really")
    (image_folder / "train" / "kiwi" / "empty.jpg").write_bytes(b"")
    data = load_data("folder", image_folder)
    err = capsys.readouterr().err
    assert err.count("skipped unreadable image") == 2 and "broken.png" in err
    assert "2 unreadable images skipped" in err and len(data.train_labels) + 9 == 90


def test_layout_mistakes_are_one_clear_error(image_folder, tmp_path):
    with pytest.raises(DataError, match="has no train/ folder"):
        load_data("folder", tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_data("folder", tmp_path / "nowhere")
    (image_folder / "test" / "banana").mkdir()
    with pytest.raises(DataError, match="banana is a class that .* lacks"):
        load_data("folder", image_folder)
    (image_folder / "test" / "banana").rmdir()
    (image_folder / "train" / "banana").mkdir()
    with pytest.raises(DataError, match="banana holds no images"):
        load_data("folder", image_folder)


def test_the_second_load_comes_from_the_cache_until_a_file_changes(image_folder, tmp_path,
                                                                    capsys):
    first = load_data("folder", image_folder)
    assert "decoded in" in capsys.readouterr().err
    os.chmod(image_folder, 0o555)  # a read-only data folder: nothing is written there
    try:
        second = load_data("folder", image_folder)
    finally:
        os.chmod(image_folder, 0o755)
    assert "from the cache" in capsys.readouterr().err
    assert torch.equal(first.train_images, second.train_images)
    assert list((tmp_path / "cache" / "folders").glob("*.pt"))  # in the cache folder only
    touched = image_folder / "train" / "apple" / "000.jpg"
    os.utime(touched, ns=(0, 0))
    load_data("folder", image_folder)
    assert "decoded in" in capsys.readouterr().err
    load_data("folder", image_folder, image_size=24)  # another size is another entry
    assert "decoded in" in capsys.readouterr().err


def test_an_unwritable_cache_costs_a_warning_not_the_run(image_folder, tmp_path, monkeypatch,
                                                         capsys):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CIFARLAB_CACHE_DIR", str(blocked))
    data = load_data("folder", image_folder)
    assert len(data.train_labels) == 81 and "could not cache" in capsys.readouterr().err


def test_predict_and_export_use_the_runs_image_size(image_folder, tmp_path, capsys):
    folder_run(image_folder, tmp_path / "run", image_size=24, epochs=1)
    assert load_model(tmp_path / "run").image_size == 24
    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), COLOURS["plum"]).save(photo)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(photo), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert {t["class"] for t in top} == set(CLASSES)
    assert main(["export", str(tmp_path / "run"), "--format", "torchscript"]) == 0
    module = torch.jit.load(str(tmp_path / "run" / "model.torchscript.pt"))
    assert module(torch.rand(2, 3, 24, 24)).shape == (2, 3)


def test_a_stopped_folder_run_of_a_torchvision_model_resumes_exactly(image_folder, tmp_path):
    settings = {"dataset": "folder", "val_size": None, "batch_size": 16, "epochs": 2,
                "model": "tv:mobilenet_v2", "model_args": {}}
    ref = train(tiny_config(image_folder, tmp_path / "ref", **settings), quiet=True)
    t = tiny_trainer(image_folder, **settings)
    with pytest.raises(CifarlabError, match="stopped by SIGINT in epoch 2 at step 0"):
        fit_in(t, tmp_path / "run", SignalAtEpochEnd())
    m = resume(tmp_path / "run", quiet=True)
    assert (m["test_top1"], m["test_loss"]) == (ref["test_top1"], ref["test_loss"])


def test_torchrun_and_tune_work_on_a_folder(image_folder, tmp_path, capsys):
    env = {**os.environ, "CIFARLAB_CACHE_DIR": str(tmp_path / "cache")}
    run = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", "-m", "cifarlab", "train", "--dataset",
                        "folder", "--data-dir", str(image_folder), "--run-dir", str(run),
                        "--epochs", "1", "--batch-size", "16", "--no-report", "--device", "cpu",
                        "--num-threads", "1", "--model-args", json.dumps(TINY["model_args"])],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["classes"] == CLASSES
    shutil.rmtree(image_folder / "test")
    settings = {k: v for k, v in TINY.items() if k not in ("epochs", "val_size")}
    cfg = tmp_path / "tune.json"
    cfg.write_text(json.dumps({**settings, "dataset": "folder", "data_dir": str(image_folder),
                               "val_size": None, "batch_size": 16,  # None: 10% of train/
                               "tune": {"lr": {"low": 0.01, "high": 0.1}}}))
    assert main(["tune", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--study",
                 "s", "--trials", "2", "--sampler-seed", "0"]) == 0
    summary = json.loads((tmp_path / "runs" / "s" / "tune.json").read_text())
    assert summary["test"].startswith("none: the image folder has no test/")
    assert "test_top1" not in summary


def test_evaluate_refuses_data_with_other_classes(image_folder, tmp_path, capsys):
    """Scoring positions of another class list against the model's names would falsify the
    result (one class removed: 55% reported for 50%)."""
    run = tmp_path / "run"
    folder_run(image_folder, run)
    other = tmp_path / "other"
    shutil.copytree(image_folder, other)
    for split in ("train", "test"):
        shutil.rmtree(other / split / CLASSES[-1])
    assert main(["evaluate", str(run), "--data-dir", str(other)]) == 2
    assert f"other classes than the model's (missing: {CLASSES[-1]})" in capsys.readouterr().err
    write_images(other / "train", 3, np.random.default_rng(2))  # back, and one more class
    for split in ("train", "test"):
        (other / split / "zucchini").mkdir()
        shutil.copy(next((image_folder / "test" / CLASSES[0]).iterdir()),
                    other / split / "zucchini" / "a.png")
    assert main(["evaluate", str(run), "--data-dir", str(other)]) == 2
    assert "not the run's: zucchini" in capsys.readouterr().err


def test_a_run_records_its_split_and_refuses_changed_data(image_folder, tmp_path, capsys):
    """Without test/, the validation split stands in for it: drawn again from a train/ that
    gained images it would hold images the run trained on. The run's data.json says what it
    used; evaluate, report and resume refuse other data in one line."""
    shutil.rmtree(image_folder / "test")
    run = tmp_path / "run"
    folder_run(image_folder, run)
    record = json.loads((run / "data.json").read_text())
    assert record["classes"] == CLASSES and record["val"]["images"] == 9
    assert main(["evaluate", str(run)]) == 0  # unchanged: fine
    capsys.readouterr()
    rng = np.random.default_rng(3)
    for name in CLASSES:  # 10 more images per class, written beside the others
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                image_folder / "train" / name / f"new{i}.png")
    for command in (["evaluate", str(run)], ["report", str(run)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "not the images" in err and "recorded for its val split (val: 9 images then, " \
            "12 now)" in err and "--other-data" in err
    assert main(["evaluate", str(run), "--other-data"]) == 0
    capsys.readouterr()
    (run / "metrics.json").unlink()  # as if stopped after its last epoch
    assert main(["train", "--resume", str(run)]) == 2
    assert "cannot resume on other data than it started with (train: 81 images then, 108 " \
        "now; val: 9 images then, 12 now)" in capsys.readouterr().err


def test_a_cache_file_of_the_right_format_and_wrong_content_is_rebuilt(image_folder, tmp_path,
                                                                       capsys):
    first = load_data("folder", image_folder)
    capsys.readouterr()
    (cached,) = (tmp_path / "cache" / "folders").glob("*.pt")
    torch.save({"classes": CLASSES, "splits": {}}, cached)  # readable, no "errors", no splits
    again = load_data("folder", image_folder)
    err = capsys.readouterr().err
    assert "ignoring the damaged image cache" in err and "decoded in" in err
    assert torch.equal(first.train_images, again.train_images)


def test_a_killed_writers_temporary_files_are_cleared(image_folder, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt.4242.tmp").write_bytes(b"half a checkpoint")  # a SIGKILL mid-write
    folder_run(image_folder, run)
    assert not list(run.glob("*.tmp"))
