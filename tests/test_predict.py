import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cifarlab import load_model
from cifarlab.cli import main
from cifarlab.data import load_cifar
from cifarlab.data.image_files import load_image
from cifarlab.inference.predict import expand_inputs, predict_files
from cifarlab.models import predict_logits


def rgb(h, w, color):
    return Image.new("RGB", (w, h), color)


@pytest.fixture
def images(tmp_path):
    """One file per format and mode the command must take, plus the broken ones."""
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8))
    photo.save(d / "a.png")
    photo.save(d / "b.jpg", quality=90)
    photo.save(d / "c.webp")
    photo.save(d / "d.bmp")
    photo.convert("RGBA").save(d / "e_rgba.png")
    photo.convert("L").save(d / "f_gray.png")
    photo.convert("P").save(d / "g_palette.png")
    rgb(7, 5, (0, 0, 255)).save(d / "h_tiny.png")
    good = sorted(p.name for p in d.iterdir())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.png").write_text("not an image")
    data = (d / "a.png").read_bytes()
    (bad / "truncated.png").write_bytes(data[:len(data) // 2])
    return d, good, bad


def test_policy_center_crop_then_resize(tmp_path):
    img = Image.new("RGB", (96, 32), (255, 0, 0))
    img.paste((0, 255, 0), (32, 0, 64, 32))  # the middle third: the center square
    img.save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png")
    assert x.shape == (3, 32, 32) and x.dtype == np.uint8
    assert (x[1] == 255).all() and (x[0] == 0).all()


def test_transparent_pixels_become_white_and_gray_becomes_rgb(tmp_path):
    Image.new("RGBA", (40, 40), (10, 20, 30, 0)).save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png") == 255).all()
    Image.new("L", (40, 40), 77).save(tmp_path / "gray.png")
    assert (load_image(tmp_path / "gray.png") == 77).all()


@pytest.mark.cpu_kinds
def test_predictions_match_the_model_on_the_same_pixels(trained_run, tmp_path):
    """A saved test image gives exactly the probabilities the model gives in evaluation:
    same scaling and normalisation as in training."""
    model = load_model(trained_run)
    cfg = model.config
    data = load_cifar("cifar10", cfg.data_dir, download=False, val_size=cfg.val_size)
    images = data.test_images[:12]
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / f"{i:02d}.png")
    results = list(predict_files(trained_run, [tmp_path], topk=10, batch_size=5))
    expected = torch.softmax(predict_logits(model, images), 1)
    assert [r["file"] for r in results] == [str(tmp_path / f"{i:02d}.png") for i in range(12)]
    for r, p in zip(results, expected, strict=True):
        got = {t["class"]: t["probability"] for t in r["top"]}
        want = {c: p[j].item() for j, c in enumerate(model.classes)}
        assert got == pytest.approx(want, abs=1e-5)


def test_every_format_is_classified_one_line_each(trained_run, images, capsys):
    folder, good, _ = images
    assert main(["predict", str(trained_run), str(folder), "--topk", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == [str(folder / n) for n in good]
    assert all(line.count("%") == 3 for line in lines)


def test_bad_files_are_reported_and_the_rest_still_classified(trained_run, images, capsys):
    folder, _, bad = images
    files = [str(folder / "a.png"), str(bad / "empty.png"), str(bad / "missing.png"),
             str(bad / "truncated.png"), str(bad / "notes.png"), str(folder / "b.jpg")]
    assert main(["predict", str(trained_run), *files, "--json"]) == 1
    out, err = capsys.readouterr()
    done = [json.loads(line) for line in out.splitlines()]
    assert [d["file"] for d in done] == [files[0], files[-1]]
    assert len(done[0]["top"]) == 5
    for name, reason in [("empty.png", "empty file"), ("missing.png", "no such file"),
                         ("truncated.png", "cannot decode"), ("notes.png", "not an image")]:
        line = next(x for x in err.splitlines() if name in x)
        assert line.startswith("cifarlab: error: ") and reason in line
    assert "4 file(s) could not be classified" in err


def test_folders_expand_to_their_images(images, tmp_path):
    folder, good, _ = images
    (folder / "readme.txt").write_text("skip me")
    sub = folder / "sub"
    sub.mkdir()
    rgb(32, 32, (1, 2, 3)).save(sub / "z.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    found = expand_inputs([folder, empty])
    assert [p for p, _ in found[:-1]] == sorted([str(folder / n) for n in good]
                                                + [str(sub / "z.png")])
    assert found[-1] == (str(empty), "folder holds no image files")


def test_bad_checkpoint_is_one_clear_error(tmp_path, images, capsys):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    folder, _, _ = images
    assert main(["predict", str(tmp_path / "junk.pt"), str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable checkpoint" in err


_PEAK = """
import resource, sys
from cifarlab.data.image_files import load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, image.mean())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KB: Linux")
def test_a_huge_image_of_a_few_kilobytes_is_read_in_little_memory(tmp_path):
    """8,000 x 8,000 pixels (64 MP, at the limit) in a palette PNG of a few KB: read band by
    band, box-reduced, never converted whole (that took 440 MB more than the imports)."""
    big = Image.new("P", (8000, 8000))
    big.putpalette([200, 10, 10] * 256)
    big.info["transparency"] = 255
    big.save(tmp_path / "big.png", optimize=True)
    assert (tmp_path / "big.png").stat().st_size < 100_000
    out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "big.png")],
                         capture_output=True, text=True, check=True).stdout.split()
    grown_mb, mean = int(out[0]), float(out[1])
    assert grown_mb < 100, grown_mb
    assert mean == pytest.approx((200 + 10 + 10) / 3, abs=1)  # its colour, not white
