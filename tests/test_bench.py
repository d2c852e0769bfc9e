import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab.cli import main
from cifarlab.data import load_cifar
from cifarlab.jobs.bench import markdown_table, summarize
from cifarlab.jobs.throughput import conv_rates, matmul_rate
from cifarlab.runs import make_config
from cifarlab.training.flops import flops_per_image


def test_summary_statistics():
    runs = [dict(test_top1=a, wall_seconds=w, peak_rss_mb=m)
            for a, w, m in [(90.0, 100, 900), (92.0, 140, 1100)]]
    s = summarize(runs)
    assert s["test_top1"]["mean"] == 91.0 and s["test_top1"]["std"] == pytest.approx(2 ** 0.5)
    assert s["wall_seconds"]["mean"] == 120 and s["peak_rss_mb"] == 1100 and s["seeds"] == 2
    assert summarize(runs[:1])["test_top1"]["std"] == 0.0
    # the 95% interval of the mean: t(0.975, 1) = 12.706 times std / sqrt(2)
    assert s["test_top1"]["ci_high"] - 91.0 == pytest.approx(12.7062 * 1.0, abs=1e-3)
    assert summarize(runs[:1])["test_top1"]["ci_low"] is None
    table = markdown_table({"runs": [dict(r, preset="fast", seed=i, cpu="x")
                                     for i, r in enumerate(runs)]})
    assert "91.00% ± 1.41 [78.29, 103.71] (90.00, 92.00)" in table


def test_bench_times_a_child_where_the_system_has_no_wait4(monkeypatch):
    import os
    import sys

    from cifarlab.jobs.bench import timed

    assert timed([sys.executable, "-c", "pass"])[1] > 1  # peak memory in MB (POSIX)
    monkeypatch.delattr(os, "wait4")  # as on Windows
    wall, peak = timed([sys.executable, "-c", "pass"])
    assert wall > 0 and peak is None


@pytest.mark.cpu_kinds
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
    # The arithmetic: counted once from the run's own settings, the same for both seeds, and
    # its rate over the training time as a share of the sitting's matrix-product rate in the
    # precision the run computed in (float32: `tutorial` sets --amp off), measured before and
    # after the runs, on whatever CPU this is.
    first, second = result["runs"]
    sitting = result["sittings"][-1]  # the only sitting
    assert first["precision"] == "float32" and len(sitting["matmul_measured"]["float32"]) == 2
    peak = sitting["matmul_flop_per_s"]["float32"]
    assert peak == max(sitting["matmul_measured"]["float32"]) and peak > 1e9
    assert first["device_name"] == sitting["device_name"]
    assert first["train_flops"] == second["train_flops"]
    assert json.loads((Path(first["run_dir"]) / "metrics.json").read_text())["train_images"] == 250
    assert first["train_flops"]["total"] == pytest.approx(
        first["train_flops"]["32px"] * (250 // 64) * 64)  # one epoch of whole batches
    assert first["utilisation"] == pytest.approx(
        first["train_flops"]["total"] / first["train_seconds"] / peak)
    assert first["gpu_peak_memory_mb"] is None  # no GPU here
    table = capsys.readouterr().out
    assert "| `tutorial` |" in table and "±" in table and "utilisation" in table
    assert main(["bench", "--table", str(out)]) == 0
    assert markdown_table(result) in capsys.readouterr().out


def test_bench_needs_known_presets(capsys):
    assert main(["bench", "turbo"]) == 2
    assert "choose from fast" in capsys.readouterr().err


def test_the_options_after_the_dashes_are_read_as_train_reads_them(tmp_path, capsys):
    """bench learns its runs' data folder, dataset and compile from train's own parser: an
    `--opt=VALUE` counts, and a run folder named `folder` is not `--dataset folder`."""
    from cifarlab.cli.bench import child_settings

    child = child_settings([f"--data-dir={tmp_path}", "--compile", "--epochs", "2"])
    assert (child.data_folder(), child.dataset, child.compile) == (str(tmp_path), "cifar10",
                                                                  True)
    assert child_settings(["--amp", "off"]).dataset == "cifar10"
    images = tmp_path / "images"
    (images / "train").mkdir(parents=True)
    assert main(["bench", "fast", "--", "--dataset", "folder", "--data-dir", str(images)]) == 2
    assert "has no test/ folder" in capsys.readouterr().err
    assert main(["bench", "fast", "--", "--run-dir", "folder"]) == 2
    assert "bench sets --run-dir of each run itself" in capsys.readouterr().err
    assert main(["bench", "fast", "--", "--epochs", "many"]) == 2  # refused before any run
    assert "epochs: cannot read 'many' as int" in capsys.readouterr().err


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


def test_training_flops_are_the_layers_worked_out_by_hand():
    """fastnet 8/16/16 with 24 whitening filters at 16 px: 2 x outputs x kernel size per conv
    and the head, once forward; backward the weight gradient of every trained layer and the
    input gradient of every layer behind a trained one (the frozen whitening has neither; the
    first group's first conv no input gradient)."""
    cfg = make_config("fast", model_args={"widths": [8, 16, 16]})
    whiten = 2 * 24 * 15 * 15 * 12
    g1 = [2 * 8 * 15 * 15 * 24 * 9, 2 * 8 * 7 * 7 * 8 * 9]
    g2 = [2 * 16 * 7 * 7 * 8 * 9, 2 * 16 * 3 * 3 * 16 * 9]
    g3 = [2 * 16 * 3 * 3 * 16 * 9, 2 * 16 * 1 * 1 * 16 * 9]
    head = 2 * 16 * 10
    behind = g1[1:] + g2 + g3 + [head]
    expected = whiten + sum(g1 + g2 + g3) + head + g1[0] + 2 * sum(behind)
    assert flops_per_image(cfg, 10, 16) == expected


def test_throughput_measures_the_matrix_product_and_each_convolution():
    assert matmul_rate(torch.device("cpu"), sizes=(128,), seconds=0.05) > 1e8
    cfg = make_config("fast", model_args={"widths": [8, 16, 16]}, batch_size=8)
    rows = conv_rates(cfg, torch.device("cpu"), None, 16, seconds=0.01)
    assert [r["passes"] for r in rows] == [1, 2, 3, 3, 3, 3, 3]  # whitening, then as above
    assert all(r["forward_flop_per_s"] > 0 and r["train_flop_per_s"] > 0 for r in rows)
    assert rows[1]["flops"] == 8 * 2 * 8 * 15 * 15 * 24 * 9


@pytest.mark.cpu_kinds
def test_utilisation_is_against_the_ceiling_in_the_runs_precision():
    """A float32 run on a CPU without native bf16 is measured against that CPU's float32 rate,
    never against its (emulated, 150x slower) bf16 rate; files of before measured bf16 only,
    under another key, and keep their figures."""
    from cifarlab.jobs.bench import add_utilisation

    def run(seed: int, where: str, precision: str | None) -> dict:
        r = dict(preset="fast", seed=seed, test_top1=85.0, wall_seconds=60.0, peak_rss_mb=1.0,
                 train_seconds=50.0, train_flops={"total": 8e12}, cpu=where)
        return r if precision is None else dict(r, device_name=where, precision=precision)

    result = {"runs": [run(0, "avx2", "float32"), run(1, "amx", "bfloat16"),
                       run(2, "old", None)],
              "sittings": [{"cpu": "avx2", "device_name": "avx2",
                            "matmul_flop_per_s": {"float32": 1.6e11, "bfloat16": 1e9}},
                           {"cpu": "amx", "device_name": "amx",
                            "matmul_flop_per_s": {"bfloat16": 2e12}},
                           {"cpu": "old", "bf16_matmul_flop_per_s": 1e12}]}
    add_utilisation(result)
    shares = {r["seed"]: r["utilisation"] for r in result["runs"]}
    assert shares == pytest.approx({0: 8e12 / 50 / 1.6e11, 1: 8e12 / 50 / 2e12,
                                    2: 8e12 / 50 / 1e12})
