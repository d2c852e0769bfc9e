"""cifarlab tune: Optuna search on the validation split, shared storage, the test set once."""

import importlib
import json
import signal
import subprocess
import sys
import time

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


@pytest.fixture(params=["sqlite", "postgresql", "journal"])
def storage(request, tmp_path):
    """Each storage a study can share: a SQLite file, a PostgreSQL server, a journal file."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        study = f"s{time.time_ns()}"  # one server for the session: a study of its own
        return url, study
    path = tmp_path / ("study.db" if request.param == "sqlite" else "study.journal")
    return (f"sqlite:///{path}" if request.param == "sqlite" else f"journal:{path}"), "s"


def load(storage):
    url, name = storage
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        url = optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    return optuna.load_study(study_name=name, storage=url)


def worker(setup, tmp_path, storage, *extra):
    return [sys.executable, "-m", "cifarlab", "tune", "--config", str(setup), "--runs-dir",
            str(tmp_path / "runs"), "--study", storage[1], "--storage", storage[0], *extra]


def test_two_workers_share_one_study(setup, tmp_path, storage, capsys):
    """Two worker processes on one study: every trial recorded once, the best trial's run
    folder evaluates."""
    cmd = worker(setup, tmp_path, storage, "--trials", "3")
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        assert "secret" not in out + err  # the password is never printed
    study = load(storage)
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    assert main(["evaluate", study.best_trial.user_attrs["run_dir"]]) == 0


def wait_until(condition, what, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def running(storage):
    try:
        return [t for t in load(storage).trials if t.state.name == "RUNNING"]
    except (KeyError, ValueError, optuna.exceptions.OptunaError):  # no study yet
        return []
    except Exception:  # noqa: BLE001 - the tables or the file are being created
        return []


def test_a_crashed_workers_trial_is_marked_failed_and_the_study_goes_on(setup, tmp_path,
                                                                       storage):
    cmd = worker(setup, tmp_path, storage, "--trials", "1", "--heartbeat", "1")
    space = json.loads(setup.read_text())
    space["tune"]["epochs"] = {"low": 200, "high": 200}  # long enough to be killed in
    setup.write_text(json.dumps(space))
    crashed = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Training has started once the trial's log has its first epoch line's header: its
    # heartbeat is running by then.
    wait_until(lambda: crashed.poll() is not None or any(
        "cifarlab " in log.read_text() for log in (tmp_path / "runs").rglob("train.log")),
        "a trial that trains")
    assert crashed.poll() is None, crashed.communicate()[1]
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    killed = time.time()
    # Stale: no beat for twice the heartbeat (1 s), by the clock, whatever the machine's speed.
    wait_until(lambda: time.time() > killed + 2 * 1 + 0.5, "the dead trial to go stale")
    space["tune"]["epochs"] = {"low": 1, "high": 1}
    setup.write_text(json.dumps(space))
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert [t.state.name for t in load(storage).trials] == ["FAIL", "COMPLETE"]


def test_a_wrong_storage_is_one_line_naming_it_without_its_password(setup, tmp_path, capsys):
    for url, said in [("postgresql://me:hunter2@127.0.0.1:1/db", "127.0.0.1:1"),
                      ("nonsense://x", "nonsense://x"),
                      (f"journal:{tmp_path}/no/such/folder/j.log", "study journal")]:
        args = ["tune", "--config", str(setup), "--runs-dir", str(tmp_path / "runs"),
                "--trials", "1", "--storage", url]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err and "hunter2" not in err, err
    assert not list((tmp_path / "runs").glob("*/trial-*"))  # before any training


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
