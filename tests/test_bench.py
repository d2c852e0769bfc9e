import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab.cli import main
from cifarlab.data import load_cifar
from cifarlab.jobs.bench import markdown_table, summarize


def test_summary_statistics():
    runs = [dict(test_top1=a, wall_seconds=w, peak_rss_mb=m)
            for a, w, m in [(90.0, 100, 900), (92.0, 140, 1100)]]
    s = summarize(runs)
    assert s["test_top1"]["mean"] == 91.0 and s["test_top1"]["std"] == pytest.approx(2 ** 0.5)
    assert s["wall_seconds"]["mean"] == 120 and s["peak_rss_mb"] == 1100 and s["seeds"] == 2
    assert summarize(runs[:1])["test_top1"]["std"] == 0.0


def test_bench_smoke_on_synthetic_data(fake_data, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "tutorial", "--seeds", "2", "--data-dir", str(fake_data), "--out", str(out),
            "--runs-dir", str(tmp_path / "runs"), "--", "--epochs", "1", "--val-size", "50"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert [(r["preset"], r["seed"]) for r in result["runs"]] == [("tutorial", 0), ("tutorial", 1)]
    for r in result["runs"]:  # each figure is the run's own
        saved = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        assert r["test_top1"] == saved["test_top1"] and r["epochs"] == saved["epochs"] == 1
        assert r["wall_seconds"] > saved["train_seconds"] and r["peak_rss_mb"] > 50
    assert result["torch_version"] and result["cpu_count"] and "tutorial" in result["summary"]
    table = capsys.readouterr().out
    assert "| `tutorial` |" in table and "±" in table
    assert main(["bench", "--table", str(out)]) == 0
    assert markdown_table(result) in capsys.readouterr().out


def test_bench_needs_known_presets(capsys):
    assert main(["bench", "turbo"]) == 2
    assert "choose from fast" in capsys.readouterr().err


def test_stand_in_data_for_gpu_timing_loads_as_cifar10(tmp_path):
    """benchmarks/stand_in_cifar.py (for gpu_check.sh on machines the real data cannot reach)
    writes what cifarlab reads: the official layout, the sizes asked for, balanced classes."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "stand_in_cifar.py"
    spec = importlib.util.spec_from_file_location("stand_in_cifar", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_stand_in(tmp_path, train=103, test=40)
    data = load_cifar("cifar10", tmp_path, download=False, val_size=0)
    assert data.train_images.shape == (103, 3, 32, 32) and data.test_images.shape[0] == 40
    assert data.train_images.dtype == torch.uint8 and len(data.classes) == 10
    assert np.bincount(data.test_labels.numpy(), minlength=10).tolist() == [4] * 10
