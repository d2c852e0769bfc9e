"""The records' recipes (benchmarks/airbench94_muon.py, benchmarks/hiverge_speedrun.py), the
comparators of `cifarlab bench --compare-record`: they run end to end, and their parts do what
the records' do."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cifarlab.cli import main
from cifarlab.jobs.bench import find_comparators
from cifarlab.training.muon import Muon

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "airbench94_muon.py"
HIVERGE = BENCHMARKS / "hiverge_speedrun.py"


def load_script(path: Path):
    sys.path.insert(0, str(BENCHMARKS))  # as when run: its folder first (comparator_kit)
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def record():
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def hiverge():
    return load_script(HIVERGE)


def test_its_muon_steps_as_cifarlabs(record):
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(8, 4, 3, 3))
    b = nn.Parameter(a.detach().clone())
    theirs = record.RecordMuon([a], lr=0.24, momentum=0.6, ns_dtype=torch.float32)
    ours = Muon([{"params": [b], "muon": True}], lr=0.24, momentum=0.6, nesterov=True)
    for _ in range(3):
        g = torch.randn_like(a)
        a.grad, b.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    torch.testing.assert_close(a, b)


def test_its_translation_crops_each_image_within_two_pixels(record):
    torch.manual_seed(0)
    images = torch.randn(64, 3, 8, 8)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    out = record.random_translate(padded, 8)
    shifts = set()
    for img, pad in zip(out, padded, strict=True):
        found = [(y, x) for y in range(5) for x in range(5)
                 if torch.equal(img, pad[:, y:y + 8, x:x + 8])]
        assert found, "every output is a window of its own padded image"
        shifts.add(found[0])
    assert len(shifts) > 10  # and the windows vary


def test_its_network_is_the_records(record):
    net = record.RecordNet()
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    # 3 conv groups of 64/256/256 (bias-free), BN biases, the whitening bias, a 256x10 head.
    convs = 24 * 64 * 9 + 64 * 64 * 9 + 64 * 256 * 9 + 256 * 256 * 9 * 3
    assert trained == convs + 2 * (64 + 256 + 256) + 24 + 2560
    assert net.head.weight.std().item() == pytest.approx(1.0, abs=1e-5)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_hiverges_network_is_the_records(hiverge):
    net = hiverge.SpeedrunNet()
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    convs = 24 * 64 * 9 + 64 * 64 * 9 + 64 * 256 * 9 + 256 * 256 * 9 * 3
    assert trained == convs + 2 * (64 + 256 + 256) + 24 + 2560
    activations = [type(m).__name__ for m in net.modules() if isinstance(m, (nn.GELU, nn.SiLU))]
    assert activations == ["GELU"] + ["SiLU"] * 6  # GELU after the whitening only
    assert net.layers[1][2].momentum == pytest.approx(1 - 0.5566)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_hiverges_batched_newton_schulz_is_each_filters_own(hiverge):
    """Zero-padding every filter to one shape and stacking them changes nothing: each result
    is the unbatched iteration of its own matrix."""
    torch.manual_seed(0)
    updates = [torch.randn(8, 3, 3, 3), torch.randn(16, 8, 3, 3), torch.randn(16, 16, 3, 3)]
    batched = hiverge.batched_newton_schulz(updates, 16, 16 * 9)
    a, b, c = 3.4576, -4.7391, 2.0843
    for u, out in zip(updates, batched, strict=True):
        x = u.reshape(len(u), -1)
        x = x / (x.norm() + 1e-5)
        for _ in range(3):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        torch.testing.assert_close(out, x.view(u.shape), rtol=1e-4, atol=1e-5)


def test_hiverges_crop_and_jitter(hiverge):
    torch.manual_seed(0)
    images = torch.randn(64, 3, 8, 8)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    out = hiverge.random_crop(padded, 8)
    windows = {next((y, x) for y in range(5) for x in range(5)
                    if torch.equal(img, pad[:, y:y + 8, x:x + 8]))
               for img, pad in zip(out, padded, strict=True)}
    assert len(windows) > 10
    jittered = hiverge.color_jitter(images)
    # One shift and one scale per image: x -> (x + s) * k is affine in every pixel.
    k = (jittered[:, 0, 0, 1] - jittered[:, 0, 0, 0]) / (images[:, 0, 0, 1] - images[:, 0, 0, 0])
    assert ((k - 1).abs() <= hiverge.CONTRAST + 1e-4).all() and k.std() > 0


@pytest.mark.parametrize("script", [SCRIPT, HIVERGE], ids=["airbench94_muon", "hiverge"])
def test_it_trains_and_writes_its_results(fake_data, tmp_path, script):
    out = tmp_path / "record.json"
    subprocess.run([sys.executable, str(script), "--data-dir", str(fake_data), "--seed", "1",
                    "--out", str(out), "--batch-size", "100", "--epochs", "2"], check=True,
                   capture_output=True)
    result = json.loads(out.read_text())
    assert 0 <= result["test_top1"] <= 100 and result["epochs"] == 2 and result["seed"] == 1
    assert result["device"] == "cpu" and result["precision"] in ("bfloat16", "float32")


@pytest.mark.parametrize("script", [SCRIPT, HIVERGE], ids=["airbench94_muon", "hiverge"])
def test_it_says_where_the_data_is_missing(tmp_path, script):
    proc = subprocess.run([sys.executable, str(script), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "CIFAR-10 not found" in proc.stderr


def test_the_checkout_lists_both_records_as_comparators():
    assert find_comparators(BENCHMARKS, []) == {"airbench94_muon": SCRIPT,
                                                "hiverge_speedrun": HIVERGE}


def test_bench_compares_with_the_record_and_merges_seeds(fake_data, tmp_path, capsys):
    """Two sittings: seed 0 then seed 1, merged into one file with the record beside them.
    The record runs on the tiny data through a wrapper that shrinks its batch."""
    benchmarks = tmp_path / "benchmarks"
    benchmarks.mkdir()
    (benchmarks / "record.py").write_text(
        f"import runpy, sys\nsys.argv += ['--batch-size', '100', '--epochs', '1']\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    (benchmarks / "comparators.json").write_text('{"airbench94_muon": {"script": "record.py"}}')
    out = tmp_path / "bench.json"
    presets = ["bench", "tutorial", "--data-dir", str(fake_data), "--out", str(out),
               "--runs-dir", str(tmp_path / "runs")]
    common = [*presets, "--compare-record", "--benchmarks-dir", str(benchmarks)]
    train_args = ["--", "--epochs", "1", "--val-size", "50"]
    assert main([*common, "--seed-list", "0", *train_args]) == 0
    assert main([*common, "--seed-list", "1", *train_args]) == 0
    result = json.loads(out.read_text())
    assert [(r["preset"], r["seed"]) for r in result["runs"]] == [
        ("tutorial", 0), ("tutorial", 1), ("airbench94_muon", 0), ("airbench94_muon", 1)]
    assert len(result["sittings"]) == 2
    s = result["summary"]
    assert s["airbench94_muon"]["seeds"] == 2 and s["tutorial"]["seeds"] == 2
    ratio = s["tutorial"]["wall_seconds"]["mean"] / s["airbench94_muon"]["wall_seconds"]["mean"]
    assert s["tutorial"]["wall_ratio"]["airbench94_muon"] == pytest.approx(ratio)
    assert "vs airbench94_muon" in capsys.readouterr().out
    # Seed 1 again replaces its runs instead of adding to them.
    assert main([*presets, "--seed-list", "1", *train_args]) == 0
    assert json.loads(out.read_text())["summary"]["tutorial"]["seeds"] == 2
    # Other training options are not merged into the same file.
    assert main([*presets, "--seed-list", "2", "--", "--epochs", "2", "--val-size", "50"]) == 2
    assert "training options" in capsys.readouterr().err


def test_compare_record_needs_a_source_checkout(tmp_path, capsys):
    args = ["bench", "fast", "--out", str(tmp_path / "b.json"), "--compare-record"]
    assert main([*args, "--benchmarks-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "source checkout" in err and err.count("\n") == 1
    assert main([*args, "turbo", "--benchmarks-dir", str(BENCHMARKS)]) == 2
    assert "no comparator turbo" in capsys.readouterr().err
