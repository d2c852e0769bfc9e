"""`cifarlab runs`: one row per run folder, the state each run ended in, studies, damage."""

import json
import shutil

import pytest

from cifarlab.cli import main
from cifarlab.errors import CifarlabError, TrainingInterrupted
from cifarlab.reporting.run_list import list_runs
from cifarlab.runs import RunFolder
from cifarlab.runs.lock import RunLock


@pytest.fixture
def runs(trained_run, tmp_path):
    """A runs folder: a finished run, a running one, a damaged one, one of an older cifarlab,
    a tuning study of two trials, and a folder that is not a run."""
    root = tmp_path / "runs"
    for name in ("done", "live", "broken", "old"):
        shutil.copytree(trained_run, root / name)
    held = RunLock(root / "live" / "lock").acquire()  # this process writes it
    (root / "broken" / "config.json").write_text("{ not json")
    for f in ("metrics.json", "state.json"):
        (root / "old" / f).unlink(missing_ok=True)
    study = root / "tune" / "s"
    for n, acc in ((0, "41.0"), (1, "77.5")):
        trial = study / f"trial-000{n}"
        shutil.copytree(trained_run, trial)
        (trial / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,"
                                           f"epoch_seconds,elapsed_seconds\n1,1,50,1,{acc},0,3,3\n")
    (study / "tune.json").write_text(json.dumps({"test_top1": 71.25}))
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run")
    yield root
    held.release()


def test_each_run_is_a_row_with_its_state(runs, trained_run):
    rows = {r["name"]: r for r in list_runs(runs)}
    assert set(rows) == {"done", "live", "broken", "old", "tune/s"}  # notes/ skipped
    metrics = json.loads((trained_run / "metrics.json").read_text())
    done = rows["done"]
    assert (done["state"], done["test_top1"], done["model"]) == ("finished",
                                                                metrics["test_top1"], "fastnet")
    assert done["epochs"] == "3/3" and done["train_time"] == metrics["train_seconds"]
    assert rows["live"]["state"] == "running"
    assert rows["broken"]["state"] == "damaged"
    assert rows["old"]["state"] == "stopped or failed"
    assert rows["old"]["detail"] == f"cifarlab train --resume {runs / 'old'}"
    study = rows["tune/s"]
    assert (study["state"], study["best_val"], study["test_top1"]) == ("study", 77.5, 71.25)
    assert study["detail"].endswith("best tune/s/trial-0001")
    expanded = {r["name"] for r in list_runs(runs, expand=True)}
    assert {"tune/s/trial-0000", "tune/s/trial-0001"} <= expanded


def test_the_run_folder_records_how_a_run_ended(tmp_path):
    for name, error, state in (("a", TrainingInterrupted("stopped by SIGINT", 2), "stopped"),
                               ("b", CifarlabError("disk full"), "failed")):
        (tmp_path / name).mkdir()
        with pytest.raises(type(error)), RunFolder(tmp_path / name):
            raise error
        assert RunFolder(tmp_path / name).status()[0] == state
        assert not (tmp_path / name / "lock").exists()
    assert RunFolder(tmp_path / "b").status() == ("failed", "disk full")


def test_the_command_sorts_and_prints_json(runs, capsys):
    assert main(["runs", str(runs), "--sort", "best_val"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "dataset", "preset"]
    assert lines[1].startswith("tune/s ")  # 77.5% beats the runs' own
    assert main(["runs", str(runs), "--json", "--all"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 7 and {r["state"] for r in rows} >= {"finished", "running", "damaged"}
    assert main(["runs", str(runs), "--sort", "colour"]) == 2
    assert main(["runs", str(runs / "nowhere")]) == 0
    assert "no runs under" in capsys.readouterr().out
