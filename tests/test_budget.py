"""`cifarlab train --time` (jobs/budget.py, training/probe.py, runs/budgets.py): the probe, the
prediction, the choice, the first lines and the last one, on tiny fake data."""

import json
from pathlib import Path

import pytest
import torch

import cifarlab.jobs.budget as budget_module
from cifarlab import train
from cifarlab.cli import main
from cifarlab.errors import CifarlabError
from cifarlab.jobs.budget import Images, parse_duration, predict
from cifarlab.runs import RunFolder, make_config
from cifarlab.runs.budgets import CANDIDATES
from cifarlab.training.probe import Speed, measure_speed, sizes_of
from conftest import TINY

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("2m", 120),
                                           ("1.5h", 5400), ("1h30m", 5400), (" 2 m ", 120),
                                           (45.5, 45.5)])
def test_budgets_are_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds", [5, 60, 90, 120, 3599, 3600, 5400, 7260])
def test_durations_are_printed_as_they_are_written(seconds):
    """The log's durations read back as budgets: `--time 2m` is reported as 2m, not 2m00s."""
    from cifarlab.runs.logs import format_duration

    assert parse_duration(format_duration(seconds)) == seconds - seconds % (
        60 if seconds >= 3600 else 1)
    assert format_duration(120) == "2m" and format_duration(5400) == "1h30m"


@pytest.mark.parametrize("text", ["", "soon", "2d", "-2m", "0s", "m"])
def test_a_budget_that_is_no_duration_is_one_line(text):
    with pytest.raises(CifarlabError, match="--time"):
        parse_duration(text)


def test_the_prediction_adds_up_each_phase():
    """fast for 3 epochs, the first 2 at 24 px: 2 epochs of 24-px steps and 1 of 32-px ones,
    whole batches only; 3 validations; one test with the run's views."""
    cfg = make_config("fast", epochs=3)
    assert [cfg.epoch_size(e) for e in (1, 2, 3)] == [24, 24, 32]
    speed = Speed(train={24: 1e-3, 32: 2e-3}, validate=1e-4, test=3e-4, probe_seconds=1.0)
    seconds = predict(cfg, speed, Images(train=45_000, val=5_000, test=10_000))
    assert seconds["train"] == pytest.approx(90 * 500 * (2 * 1e-3 + 2e-3))
    assert seconds["validate"] == pytest.approx(3 * 5_000 * 1e-4)
    assert seconds["test"] == pytest.approx(10_000 * 3e-4)


@pytest.mark.cpu_kinds
def test_the_probe_times_each_size_the_run_can_train_at():
    cfg = make_config("fast", model_args={"widths": [8, 16, 16], "whiten_width": 8},
                      batch_size=16, device="cpu")
    speed = measure_speed(cfg, 10, torch.device("cpu"), repeats=1)
    assert sizes_of(cfg) == [24, 32] and set(speed.train) == {24, 32}
    assert all(s > 0 for s in [*speed.train.values(), speed.validate, speed.test])
    assert speed.probe_seconds > 0


def fake_probe(monkeypatch, per_image):
    """measure_speed replaced: seconds per training image by network (its first width), the
    same for every size; the networks it was asked for."""
    asked = []

    def probe(cfg, num_classes, device, repeats=2):
        width = cfg.model_args["widths"][0]
        asked.append(width)
        s = per_image[width]
        return Speed({size: s for size in sizes_of(cfg)}, s / 3, s, 0.01)

    monkeypatch.setattr(budget_module, "measure_speed", probe)
    return asked


def test_the_most_accurate_candidate_that_fits_is_chosen(monkeypatch, fake_data, capsys):
    """On fake data (300 training images, one step an epoch): fast's network at 1 ms an
    image, 90's at 2 ms, both fitting 30 s at every length; 94's at 40 ms, 80 s an epoch of
    2,000 images: measured, but too slow; 95's never measured: even at twice the smallest
    network's FLOP rate it could not fit. The plan is the most accurate candidate that fits,
    and its first lines say so."""
    asked = fake_probe(monkeypatch, {32: 1e-3, 48: 2e-3, 64: 4e-2})
    plan, _ = budget_module.plan_run(30.0, budget_module.time.time(),
                                     data_dir=str(fake_data), report=False)
    best = max((k for k in CANDIDATES if k[0] in ("fast", "90")), key=CANDIDATES.get)
    assert (plan.cfg.preset, plan.cfg.epochs) == best and asked == [32, 48, 64]
    assert plan.expected == CANDIDATES[best]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("time budget 30s on ") and "measuring this machine" in out[0]
    assert out[1].startswith(f"plan: preset {best[0]} (fastnet ")


def test_a_named_preset_trains_as_many_epochs_as_fit(monkeypatch, fake_data):
    """With --preset, the budget chooses only the length: fast's network at 10 ms an image is
    5 s an epoch here (one batch of 500), 1 s to test 100 images, 1 s to exit; 3 epochs fit
    in 95% of 20 s, 4 do not."""
    fake_probe(monkeypatch, {32: 1e-2})
    plan, _ = budget_module.plan_run(20.0, budget_module.time.time(), preset="fast",
                                     data_dir=str(fake_data), report=False)
    assert (plan.cfg.preset, plan.cfg.epochs, plan.cfg.low_res_epochs) == ("fast", 3, 2)
    assert plan.predicted["train"] == pytest.approx(15)
    assert plan.expected == CANDIDATES.get(("fast", 3))  # the preset's own recipe: measured


def test_a_budget_below_the_smallest_run_says_the_least_it_needs(monkeypatch, fake_data,
                                                                  capsys):
    fake_probe(monkeypatch, {32: 1.0, 48: 2.0, 64: 4.0, 128: 8.0})
    assert main(["train", "--time", "5s", "--data-dir", str(fake_data)]) == 2
    err = capsys.readouterr().err
    assert "below the smallest sensible run" in err and "give --time" in err
    assert err.count("\n") == 1
    assert main(["train", "--time", "2m", "--epochs", "3", "--data-dir", str(fake_data)]) == 2
    assert "drop --epochs" in capsys.readouterr().err


@pytest.mark.cpu_kinds
def test_a_budget_run_keeps_its_plan_and_says_how_it_kept_to_it(monkeypatch, tmp_path,
                                                                  fake_data):
    """A real run: tiny settings (a named model, so the budget chooses the epochs) within a
    generous budget. The plan is in the log's first lines and metrics.json, the outcome in
    its last line; the run trained the planned epochs."""
    settings = {k: v for k, v in TINY.items() if k not in ("epochs", "low_res_epochs")}
    run = tmp_path / "run"
    monkeypatch.setattr(budget_module, "MAX_EPOCHS", 3)
    metrics = train(budget="2m", data_dir=str(fake_data), run_dir=str(run), quiet=True,
                    **settings)
    planned = metrics["budget"]
    assert planned["epochs"] == metrics["epochs"] == 3 and planned["budget_seconds"] == 120
    assert planned["expected_val_top1"] is None  # tiny settings: never measured
    log = (run / "train.log").read_text().splitlines()
    assert log[0].startswith("time budget 2m on ") and log[1].startswith("plan: preset fast")
    assert log[-1].startswith("time budget 2m: done in ")
    assert json.loads((run / "metrics.json").read_text())["budget"] == planned
    assert RunFolder(run).settings().epochs == 3


def test_the_candidates_are_the_development_runs_means():
    """runs/budgets.py holds, per candidate, the mean over seeds of the development runs in
    benchmarks/budget-candidates.json, in the order the probe takes them."""
    runs = json.loads((BENCHMARKS / "budget-candidates.json").read_text())["runs"]
    means = {}
    for r in runs:
        means.setdefault((r["preset"], r["epochs"]), []).append(r["val_top1"])
    assert {k: round(sum(v) / len(v), 2) for k, v in means.items()} == CANDIDATES
    widths = [make_config(p).model_args["widths"][0] for p, _ in CANDIDATES]
    assert widths == sorted(widths)


def test_estimate_predicts_each_presets_wall_time_here(monkeypatch, fake_data, capsys):
    """`cifarlab presets --estimate`: every preset, from the same probe and prediction as a
    budget; presets that stop early say "up to"."""
    seen = []

    def probe(cfg, num_classes, device, repeats=2):
        seen.append(cfg.preset)
        return Speed({size: 1e-4 for size in sizes_of(cfg)}, 1e-5, 1e-5, 0.01)

    monkeypatch.setattr(budget_module, "measure_speed", probe)
    assert main(["presets", "--estimate", "--data-dir", str(fake_data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Predicted wall time of each preset on ") and "300 training" in out[0]
    assert seen == list(make_config(p).preset for p in seen) and len(out) == 1 + len(seen)
    lines = {line.split()[0]: line for line in out[1:]}
    assert "up to" in lines["seed"] and "it stops early" in lines["seed"]
    assert "up to" not in lines["fast"] and ", 2 epochs (training " in lines["fast"]


def test_the_gpu_checks_are_valid_scripts_with_their_budgets():
    import subprocess

    for script in ("gpu_check.sh", "gpu_check_compiled.sh"):
        subprocess.run(["bash", "-n", str(BENCHMARKS / script)], check=True)
    assert "--time 10s 60s" in (BENCHMARKS / "gpu_check.sh").read_text()
