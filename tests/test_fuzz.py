"""Generated damage, fed to every command that reads the damaged file: truncations and bit flips
of checkpoints and model packages, wrong types and broken JSON in the run folder's files and a
package's config.json (settings that contradict each other or the weights), odd bytes as images.
Each command either works or says what is wrong in one line (exit 2, or 1 for predict's bad
files): no traceback, whatever the damage."""

import json
import random
import shutil

import pytest
import torch

from cifarlab.cli import main

JSON_FILES = ("config.json", "metrics.json", "state.json", "data.json")
WRONG = [None, "text", 3, -1.5, [], {}, [1, "a"], True]


def truncations_and_flips(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = [data[:n] for n in (0, 1, len(data) // 3, 2 * len(data) // 3, len(data) - 1)]
    flips = []
    for _ in range(4):
        damaged = bytearray(data)
        for _ in range(3):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        flips.append(bytes(damaged))
    return cuts + flips


def json_variants(text: str, rng: random.Random) -> list[bytes]:
    out = [b"", b"{", b"[1, 2]", b'"a string"', b"\xff\xfe binary", b"null"]
    values = json.loads(text)
    for key in rng.sample(sorted(values), min(6, len(values))):
        out.append(json.dumps({**values, key: rng.choice(WRONG)}).encode())
        out.append(json.dumps({k: v for k, v in values.items() if k != key}).encode())
    return out


def commands(run, other, tmp_path):
    image = tmp_path / "image.png"
    return [["evaluate", str(run)], ["predict", str(run), str(image)],
            ["export", str(run), "--format", "torchscript", "-o", str(tmp_path / "m.pt")],
            ["runs", str(run.parent)], ["compare", str(run), str(other), "-o",
                                        str(tmp_path / "c.html")],
            ["train", "--resume", str(run)]]


def check(command, capsys):
    try:
        code = main(command)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, (command, err)
    assert code in (0, 1, 2), (command, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cifarlab"), (command, err)


@pytest.fixture
def runs(trained_run, tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 200, 40)).save(tmp_path / "image.png")
    other = shutil.copytree(trained_run, tmp_path / "runs" / "other")
    return trained_run, other


def test_damaged_checkpoints(runs, tmp_path, capsys):
    trained, other = runs
    rng = random.Random(0)
    for name in ("best.pt", "last.pt"):
        for n, data in enumerate(truncations_and_flips((trained / name).read_bytes(), rng)):
            run = shutil.copytree(trained, tmp_path / "runs" / f"{name}-{n}")
            (run / "metrics.json").unlink()  # resumable, so --resume reads last.pt
            (run / name).write_bytes(data)
            for command in commands(run, other, tmp_path):
                if command[0] in ("runs", "compare"):
                    continue  # they read no checkpoint
                check(command, capsys)
            shutil.rmtree(run)


def test_damaged_json_and_csv(runs, tmp_path, capsys):
    trained, other = runs
    rng = random.Random(1)
    variants = [(name, v) for name in JSON_FILES
                for v in json_variants((trained / name).read_text(), rng)]
    rows = (trained / "metrics.csv").read_bytes()
    variants += [("metrics.csv", v) for v in truncations_and_flips(rows, rng)]
    variants += [("metrics.csv", b"epoch,train_loss\n1,abc\n"), ("lock", b"\x00\xff junk"),
                 ("calibration.json", b'{"checkpoint": "best.pt", "temperature": "hot"}')]
    for n, (name, data) in enumerate(variants):
        run = shutil.copytree(trained, tmp_path / "runs" / f"{n}-{name}")
        (run / name).write_bytes(data)
        for command in commands(run, other, tmp_path):
            check(command, capsys)
        shutil.rmtree(run)


def test_odd_bytes_as_images_and_weights(trained_run, fake_data, tmp_path, capsys):
    rng = random.Random(2)
    png = tmp_path / "ok.png"
    from PIL import Image

    Image.new("RGB", (50, 50), (1, 2, 3)).save(png)
    good = png.read_bytes()
    files = []
    for n, data in enumerate(truncations_and_flips(good, rng)):
        for ext in (".png", ".jpg", ".gif", ".tif", ".webp", ".bmp"):
            f = tmp_path / f"odd{n}{ext}"
            f.write_bytes(data)
            files.append(f)
    check(["predict", str(trained_run), *map(str, files)], capsys)
    weights = torch.load(trained_run / "best.pt", weights_only=True)["state_dict"]
    torch.save(weights, tmp_path / "w.pt")
    for n, data in enumerate(truncations_and_flips((tmp_path / "w.pt").read_bytes(), rng)):
        f = tmp_path / f"w{n}.pt"
        f.write_bytes(data)
        check(["train", "--data-dir", str(fake_data), "--run-dir", str(tmp_path / f"r{n}"),
               "--weights", str(f), "--epochs", "1", "--model-args",
               json.dumps({"widths": [8, 16, 16], "whiten_width": 8}), "--device", "cpu",
               "--amp", "off", "--no-report", "--quiet"], capsys)


def test_damaged_packages(trained_run, tmp_path, capsys):
    """A model package's weights truncated or flipped, and its config.json broken or with
    settings that contradict each other or the weights: every command that reads a package
    works or says what is wrong in one line; a flipped weight never gives a figure."""
    from PIL import Image

    from cifarlab.inference.package import export_package

    Image.new("RGB", (40, 30), (120, 200, 40)).save(tmp_path / "image.png")
    good = tmp_path / "good"
    export_package(trained_run, good)
    data = str(json.loads((trained_run / "config.json").read_text())["data_dir"])
    rng = random.Random(3)
    config = json.loads((good / "config.json").read_text())
    contradictions = [{**config, "num_classes": 3},
                      {**config, "cifarlab": {**config["cifarlab"], "classes": ["a", "b"]}},
                      {**config, "cifarlab": {**config["cifarlab"], "settings": {
                          **config["cifarlab"]["settings"], "model": "resnet18"}}},
                      {**config, "cifarlab": {**config["cifarlab"], "image_size": 0}},
                      {**config, "cifarlab": {**config["cifarlab"], "temperature": -1}}]
    weights = truncations_and_flips((good / "model.safetensors").read_bytes(), rng)
    variants = [("model.safetensors", weights[i]) for i in (0, 2, 5, 6, 7)]
    variants += [("config.json", json.dumps(c).encode()) for c in contradictions]
    broken = json_variants((good / "config.json").read_text(), rng)
    variants += [("config.json", broken[i]) for i in (1, 4, 6, 7, 8)]
    for n, (name, damaged) in enumerate(variants):
        package = shutil.copytree(good, tmp_path / f"pkg{n}")
        (package / name).write_bytes(damaged)
        for command in (["evaluate", str(package), "--data-dir", data],
                        ["predict", str(package), str(tmp_path / "image.png")],
                        ["export", str(package), "--format", "torchscript", "-o",
                         str(tmp_path / f"m{n}.pt")]):
            check(command, capsys)
        shutil.rmtree(package)
