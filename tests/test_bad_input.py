"""Careless or hostile input to every command: one line that says what to do, exit code 2,
no traceback, nothing written. Cases from the adversarial sweep (issue 28)."""

import shutil

import pytest

from cifarlab.cli import main
from conftest import tiny_args


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("cifarlab") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "seed must be in [0, 2**32 - 1]"),
    (["--seed", "4294967296"], "seed must be in [0, 2**32 - 1]"),
    (["--split-seed", "-1"], "split_seed must be in"),
    (["--gamma", "-1"], "gamma (the step schedule's factor) must be in (0, 1]"),
    (["--mixup-alpha", "inf"], "mixup_alpha must be a finite number"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--model-args", '{"widths": [-8, 16, 16]}'], "cannot be built with model_args"),
    (["--model", "tv:resnet18", "--model-args", '{"dropout": 2}'], "cannot be built with"),
])
def test_bad_settings_are_one_line_before_any_work(fake_data, tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    assert main(["train", *tiny_args(fake_data, run), *extra]) == 2
    assert message in one_line(capsys)
    assert not (run / "last.pt").exists()


def test_a_shortened_preset_runs(fake_data, tmp_path):
    """`--preset 94 --epochs 2` was refused (its 3 low-resolution epochs outnumbered the run):
    the low-resolution share of a preset scales with --epochs."""
    from cifarlab import make_config

    cfg = make_config("94", epochs=2, data_dir=str(fake_data))
    assert (cfg.epochs, cfg.low_res_epochs) == (2, 1)
    assert make_config("94", epochs=1).low_res_epochs == 0
    assert make_config("94").low_res_epochs == 3  # the preset itself unchanged
    assert make_config("94", epochs=2, low_res_epochs=0).low_res_epochs == 0  # as asked


def test_evaluate_and_export_refuse_bad_options(trained_run, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--batch-size", "-1"]) == 2
    assert "--batch-size must be at least 1" in one_line(capsys)
    for fmt, name in (("torchscript", "x.onnx"), ("onnx", "x.pt")):
        assert main(["export", str(trained_run), "--format", fmt, "-o",
                     str(tmp_path / name)]) == 2
        assert f"does not fit --format {fmt}" in one_line(capsys)
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name, content", [
    ("junk.safetensors", b"not safetensors at all"),
    ("empty.safetensors", b""),
    ("notes.pth", b"e" * 200),  # a text file read as a pickle
    ("empty.pth", b""),
])
def test_bad_weights_files_are_one_line(fake_data, tmp_path, capsys, name, content):
    (tmp_path / name).write_bytes(content)
    assert main(["train", *tiny_args(fake_data, tmp_path / "run"), "--weights",
                 str(tmp_path / name)]) == 2
    assert "is not a plain state dict of tensors" in one_line(capsys)


def test_a_weights_folder_is_named_as_a_folder(fake_data, tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    assert main(["train", *tiny_args(fake_data, tmp_path / "run"), "--weights",
                 str(tmp_path / "weights")]) == 2
    assert "is a folder; give the weights file in it" in one_line(capsys)


def test_images_pillow_cannot_decode_are_one_line_each(trained_run, tmp_path):
    """A DDS file with pixel flags Pillow does not know (NotImplementedError), a decompression
    bomb (12000x12000 pixels in a few KB), and a file whose name is not UTF-8 (Latin-1 'café'):
    each is one line, and the good image is still classified."""
    import os
    import struct
    import subprocess
    import sys

    from PIL import Image

    dds = b"DDS " + struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0) + bytes(44)
    dds += struct.pack("<8I", 32, 0x80000, 0, 0, 0, 0, 0, 0) + struct.pack("<5I", 0x1000, 0, 0,
                                                                            0, 0)
    (tmp_path / "odd.dds").write_bytes(dds + bytes(64))
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "good.png")
    latin1 = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    with open(latin1, "wb") as f:
        f.write((tmp_path / "good.png").read_bytes())
    out = subprocess.run([sys.executable, "-m", "cifarlab", "predict", str(trained_run),
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    errors = out.stderr.strip().splitlines()
    assert any("odd.dds: cannot decode image (Unknown pixel format flags" in e for e in errors)
    assert any("bomb.png: refused: 12000x12000 pixels" in e for e in errors)
    assert "good.png" in out.stdout and "caf\\udce9.png" in out.stdout  # escaped, not a crash


@pytest.mark.parametrize("name, content, said", [
    ("metrics.csv", b"\xff\xfe\x00binary\x00", "metrics.csv is damaged"),
    ("metrics.csv", b"epoch,train_loss\n1,abc\n", "metrics.csv is damaged"),
    ("metrics.json", b'{"test_top1": "high", "evaluated_on": "test"}',
     "metrics.json is damaged (test_top1 is 'high', not a number)"),
    ("metrics.json", b'{"test_top1": 50.0, "evaluated_on": "test", "per_class": {}}',
     "metrics.json is damaged (no test_top5)"),
])
def test_damaged_run_folders_are_named_not_tracebacks(trained_run, tmp_path, capsys, name,
                                                      content, said):
    import shutil

    runs = tmp_path / "runs"
    run = shutil.copytree(trained_run, runs / "run")
    other = shutil.copytree(trained_run, runs / "other")
    (run / name).write_bytes(content)
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "damaged" in out and said in out
    assert main(["runs", str(runs), "--sort", "epochs"]) == 0  # mixed types sort too
    capsys.readouterr()
    assert main(["compare", str(run), str(other), "-o", str(tmp_path / "c.html")]) == 2
    assert said in one_line(capsys)
    if name == "metrics.json":
        assert main(["report", str(run)]) == 2
        assert said in one_line(capsys)


def test_a_checkpoint_with_flipped_bytes_is_refused(trained_run, tmp_path):
    """Three flipped bytes in the weights loaded silently and predicted worse: the checkpoint's
    digest catches them."""
    import torch

    from cifarlab import load_model
    from cifarlab.errors import CheckpointError

    state = torch.load(trained_run / "best.pt", weights_only=True)
    assert len(state["weights_sha256"]) == 64
    name = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    state["state_dict"][name] = state["state_dict"][name] + 1.0  # the digest is the old one
    torch.save(state, tmp_path / "changed.pt")
    with pytest.raises(CheckpointError, match="do not match their digest"):
        load_model(tmp_path / "changed.pt")
    data = bytearray((trained_run / "best.pt").read_bytes())
    for i in (0.55, 0.6, 0.65):
        data[int(i * len(data))] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "flipped.pt")


def test_hostile_config_files_and_folders_are_one_line(fake_data, tmp_path, capsys):
    import os

    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    bomb.write_text("\n".join(lines) + "\n")
    assert main(["train", "--config", str(bomb), *tiny_args(fake_data, tmp_path / "r")]) == 2
    assert "uses YAML aliases" in one_line(capsys)
    runs = tmp_path / "runs"
    (runs / "piped").mkdir(parents=True)
    os.mkfifo(runs / "piped" / "config.json")  # would block a plain read for good
    (runs / "elsewhere").symlink_to(tmp_path)  # out of the folder (and round in a loop)
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "piped" in out and "not a regular file" in out and "elsewhere" not in out


def test_image_folders_a_classifier_cannot_learn_from_are_refused(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from cifarlab.data import load_data

    root = tmp_path / "one"
    (root / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (40, 40), (10, 20, 30)).save(root / "train" / "cat" / "a.png")
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--run-dir",
                 str(tmp_path / "r1")]) == 2
    assert "needs two or more" in one_line(capsys)
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "b.png").write_bytes(b"not an image")
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--run-dir",
                 str(tmp_path / "r2")]) == 2
    assert f"no readable training image in {root}/train/dog" in capsys.readouterr().err
    rng = np.random.default_rng(0)  # a constant blue channel: std 0 would give infinities
    (root / "train" / "cat" / "a.png").unlink()
    (root / "train" / "dog" / "b.png").unlink()
    for name in ("cat", "dog"):
        for i in range(12):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            pixels[..., 2] = 7
            Image.fromarray(pixels).save(root / "train" / name / f"{i}.png")
    data = load_data("folder", root)
    assert data.stats[1][2] == pytest.approx(1 / 255, abs=1e-4)
    assert "channel 2 of the training images is constant" in capsys.readouterr().err


def test_a_folder_with_a_latin1_class_and_an_undecodable_image_trains(tmp_path):
    """A class folder named in Latin-1 ('café', not UTF-8) and a DDS file Pillow cannot decode
    in train/: the run trains, the bad file is one line, nothing crashes on printing."""
    import json
    import os
    import struct
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from conftest import TINY

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    train = os.path.join(os.fsencode(root), b"train")
    for name in (b"caf\xe9", b"tea"):
        folder = os.path.join(train, name)
        os.makedirs(folder)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(
                os.path.join(folder, f"{i}.png".encode()))
    dds = b"DDS " + struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0) + bytes(44)
    dds += struct.pack("<8I", 32, 0x80000, 0, 0, 0, 0, 0, 0) + bytes(20) + bytes(64)
    with open(os.path.join(train, b"tea", b"odd.dds"), "wb") as f:
        f.write(dds)
    settings = {**TINY, "val_size": 4, "batch_size": 8, "epochs": 1}
    args = ["--model-args", json.dumps(settings.pop("model_args"))]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if value else ["--no-" + key.replace("_", "-")]
        else:
            args += [flag, str(value)]
    env = {**os.environ, "CIFARLAB_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "cifarlab", "train", "--dataset", "folder",
                          "--data-dir", str(root), "--run-dir", str(tmp_path / "run"), *args],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "odd.dds: cannot decode image" in out.stderr and "caf\\udce9" in out.stdout


def test_what_the_file_system_refuses_is_one_line_naming_the_path(trained_run, fake_data,
                                                                  tmp_path, capsys):
    """Paths too long for the file system, and a file where a folder is expected: one line
    with the path and the reason, whichever command meets them."""
    long = str(tmp_path / ("x" * 300) / "y")
    (tmp_path / "file").write_text("a file")
    a_file = str(tmp_path / "file")
    copy = shutil.copytree(trained_run, tmp_path / "copy")
    for command in (["train", *tiny_args(fake_data, tmp_path / "run"), "--data-dir", long],
                    ["train", *tiny_args(fake_data, long)],
                    ["predict", str(trained_run), long],
                    ["evaluate", str(trained_run), "--data-dir", long],
                    ["evaluate", long],
                    ["compare", str(trained_run), str(copy), "-o",
                     str(tmp_path / "c.html"), "--pictures", a_file]):
        assert main(command) == 2, command
        err = one_line(capsys)
        assert "Traceback" not in err and ("x" * 300 in err or a_file in err), err
