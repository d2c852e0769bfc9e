"""cifarlab tune: Optuna search on the validation split, shared storage, the test set once."""

import importlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
import warnings

import pytest

from cifarlab.cli import main
from cifarlab.errors import ConfigError
from cifarlab.jobs.tune import default_space, read_space
from conftest import TINY

optuna = pytest.importorskip("optuna")

SPACE = {"lr": {"low": 0.01, "high": 0.1, "log": True},
         "label_smoothing": {"low": 0.0, "high": 0.2},
         "batch_size": {"choices": [16, 32]}, "epochs": {"low": 1, "high": 2}}


@pytest.fixture
def setup(fake_data, tmp_path):
    """A config file with TINY settings and a small search space in its `tune` table."""
    cfg = {k: v for k, v in TINY.items() if k not in ("epochs", "batch_size", "lr")}
    cfg.update(data_dir=str(fake_data), tune=SPACE)
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(cfg))
    return path


def tune_args(setup, tmp_path, *extra):
    return ["tune", "--config", str(setup), "--runs-dir", str(tmp_path / "runs"),
            "--study", "s", "--storage", f"sqlite:///{tmp_path / 'study.db'}", *extra]


def test_search_keeps_the_test_set_for_the_end(setup, tmp_path, capsys, monkeypatch):
    module = importlib.import_module("cifarlab.inference.evaluation")
    tested = []
    real = module.evaluate
    monkeypatch.setattr(module, "evaluate", lambda *a, **k: tested.append(a) or real(*a, **k))
    assert main(tune_args(setup, tmp_path, "--trials", "4", "--sampler-seed", "0")) == 0
    out = capsys.readouterr().out
    assert out.count("validation") >= 4 and "used once, after the search" in out
    summary = json.loads((tmp_path / "runs" / "s" / "tune.json").read_text())
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 4
    assert set(summary["best_params"]) == set(SPACE)
    assert len(tested) == 1  # the test set: once, for the best trial only
    best = summary["best_run_dir"]
    assert tested[0][0] == best and summary["test_top1"] == real(best)["top1"]
    for trial in (tmp_path / "runs" / "s").glob("trial-*"):
        m = json.loads((trial / "metrics.json").read_text()) if (
            trial / "metrics.json").exists() else {"test": "pruned"}
        assert "test_top1" not in m  # no trial looked at the test set
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    first = study.trials[0]
    assert first.intermediate_values  # validation accuracy reported every epoch


def test_two_workers_share_one_study(setup, tmp_path):
    cmd = [sys.executable, "-m", "cifarlab", *tune_args(setup, tmp_path, "--trials", "3")]
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 6
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


def wait_until(condition, what, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def heartbeats(db):
    """How many trials have sent a heartbeat (Optuna's trial_heartbeats table)."""
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not created yet
        return 0


def test_a_crashed_workers_trial_is_marked_failed_and_the_study_goes_on(setup, tmp_path):
    db = tmp_path / "study.db"
    cmd = [sys.executable, "-m", "cifarlab",
           *tune_args(setup, tmp_path, "--trials", "1", "--heartbeat", "1")]
    space = json.loads(setup.read_text())
    space["tune"]["epochs"] = {"low": 200, "high": 200}  # long enough to be killed in
    setup.write_text(json.dumps(space))
    crashed = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: heartbeats(db) == 1 or crashed.poll() is not None, "a heartbeat")
    assert crashed.poll() is None, crashed.communicate()[1]
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    # The race this test means: the next worker starts after the dead trial went stale.
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}", heartbeat_interval=1,
                                             grace_period=2)
    study_id = storage.get_study_id_from_name("s")
    wait_until(lambda: storage._get_stale_trial_ids(study_id), "the trial to go stale")
    space["tune"]["epochs"] = {"low": 1, "high": 1}
    setup.write_text(json.dumps(space))
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]


def test_the_default_search_space_follows_the_preset():
    """A fixed range (lr 0.2-2) made every trial of the tutorial CNN diverge."""
    from cifarlab import make_config

    for preset in ("tutorial", "fast", "94"):
        base = make_config(preset)
        space = default_space(base)
        assert space["lr"]["low"] < base.lr < space["lr"]["high"]
        assert space["lr"]["high"] / space["lr"]["low"] == pytest.approx(9)
        assert base.batch_size in space["batch_size"]["choices"]
        assert space["epochs"]["low"] <= base.epochs <= space["epochs"]["high"]
        assert space["epochs"]["low"] >= base.low_res_epochs
    assert "muon_lr" in default_space(make_config("fast"))
    assert default_space(make_config("tutorial"))["lr"]["high"] < 0.2


def test_search_space_files_and_mistakes(tmp_path):
    assert read_space(None) is None  # the preset's own space, made when its recipe is known
    f = tmp_path / "space.yaml"
    f.write_text("lr: {low: 0.1, high: 1, log: true}\n")
    assert read_space(f) == {"lr": {"low": 0.1, "high": 1, "log": True}}
    f.write_text("nonsense: {low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match="'nonsense' cannot be searched"):
        read_space(f)
    f.write_text("lr: 0.5\n")
    with pytest.raises(ConfigError, match="needs"):
        read_space(f)


def test_tuning_without_a_validation_split_is_refused(setup, tmp_path, capsys):
    cfg = json.loads(setup.read_text())
    cfg["val_size"] = 0
    setup.write_text(json.dumps(cfg))
    assert main(tune_args(setup, tmp_path, "--trials", "1")) == 2
    assert "test set must not guide the search" in capsys.readouterr().err


def test_workers_started_together_on_a_new_database_all_join(tmp_path):
    """They race to create the tables; without a retry about 4 in 10 lost (measured). A file
    barrier starts them together: each says it is ready (torch imported), then all wait for
    the go."""
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\nfrom cifarlab.jobs.tune import open_study\n"
            "pathlib.Path(sys.argv[2]).touch()\n"
            "while not pathlib.Path(sys.argv[3]).exists(): time.sleep(0.001)\n"
            "open_study('sqlite:///' + sys.argv[1], 's', heartbeat=5)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "new.db"),
                               str(tmp_path / f"ready{i}"), str(go)], stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(4))
               or any(p.poll() is not None for p in procs), "four ready workers")
    assert not (tmp_path / "new.db").exists()  # nobody has started before the others
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
