"""The run folder (runs/folder.py, runs/checkpoint.py): every file read back by its one owner,
damage as one clear error, and run folders written by the previous version (checkpoint format
2, tests/data/v2, made by cifarlab at a75e5ea) still evaluating and resuming."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from cifarlab import evaluate, resume
from cifarlab.cli import main
from cifarlab.errors import CheckpointError
from cifarlab.reporting.run_list import list_runs
from cifarlab.runs import Config, RunFolder, open_checkpoint
from cifarlab.runs.checkpoint import VERSION
from conftest import rows, write_fake_cifar

V2 = Path(__file__).parent / "data" / "v2"  # TINY runs of 3 epochs: finished, and stopped


@pytest.fixture(scope="module")
def v2_data(tmp_path_factory) -> Path:
    """The data the v2 runs trained on: the fake CIFAR-10 of write_fake_cifar, seeded."""
    root = tmp_path_factory.mktemp("v2-data")
    write_fake_cifar(root)
    return root


def test_every_file_of_a_run_is_read_back_by_the_folder(trained_run):
    folder = RunFolder(trained_run)
    cfg = folder.settings()
    assert isinstance(cfg, Config) and cfg.mean is not None and cfg.data_dir is not None
    metrics = folder.metrics()
    assert metrics["epochs"] == 3 and [r["epoch"] for r in folder.rows()] == [1, 2, 3]
    assert all(isinstance(r["val_acc"], float) for r in folder.rows())
    assert folder.ended()["state"] == "finished" and folder.status() == ("finished", "")
    best, last = folder.checkpoint("best"), folder.checkpoint("last")
    assert best.config == last.config == cfg and best.classes == metrics["classes"]
    assert best.epoch == metrics["best_epoch"] and last.epoch == 3 and last.resume is not None
    assert open_checkpoint(trained_run).path == folder.checkpoint_path("best")
    assert folder.report_page.is_file() and "best.pt" in folder.saved_files()


def test_a_damaged_file_is_one_clear_error(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "config.json").write_text("{ not json")
    (run / "metrics.csv").write_text("epoch,train_loss\n1,2,3\n")
    with pytest.raises(CheckpointError, match=r"config.json is damaged"):
        RunFolder(run).settings()
    with pytest.raises(CheckpointError, match=r"metrics.csv is damaged"):
        RunFolder(run).rows()
    assert RunFolder(tmp_path).settings(missing_ok=True) is None
    with pytest.raises(CheckpointError, match="is not a run folder"):
        RunFolder(tmp_path).settings()


def test_checkpoints_are_written_in_this_version(trained_run):
    raw = torch.load(trained_run / "best.pt", weights_only=True)
    assert raw["version"] == VERSION == 3
    assert "mean" not in raw and "model_args" not in raw  # only in its settings
    assert tuple(raw["config"]["mean"]) == RunFolder(trained_run).settings().mean


def test_a_finished_run_of_the_previous_version_evaluates_as_it_did(v2_data, capsys):
    recorded = json.loads((V2 / "finished" / "metrics.json").read_text())
    m = evaluate(V2 / "finished", v2_data, device="cpu")
    assert m["top1"] == pytest.approx(recorded["test_top1"])
    assert m["loss"] == pytest.approx(recorded["test_loss"], rel=1e-4)
    ckpt = open_checkpoint(V2 / "finished")
    assert ckpt.config.mean == (0.4914, 0.4822, 0.4465)  # the old header's, in its settings
    assert main(["runs", str(V2)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "stopped" in out


def test_a_stopped_run_of_the_previous_version_resumes(v2_data, tmp_path):
    run = tmp_path / "stopped"
    shutil.copytree(V2 / "stopped", run)
    before = rows(run)
    m = resume(run, quiet=True, data_dir=str(v2_data))
    after = rows(run)
    assert m["epochs"] == 3 and [r["epoch"] for r in after] == [1, 2, 3]
    assert after[0] == before[0]  # the epoch it kept, as it was
    assert RunFolder(run).status() == ("finished", "") and open_checkpoint(run).config.epochs == 3
    rows_of = {r["name"]: r for r in list_runs(tmp_path)}
    assert rows_of["stopped"]["state"] == "finished"


def test_the_process_check_leaves_a_live_process_alive():
    import subprocess
    import sys

    from cifarlab.runs.lock import process_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_alive(child.pid)
        assert child.poll() is None  # still running after the check
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)


def test_the_windows_process_check_only_queries():
    """On Windows os.kill(pid, 0) would end the process: the check opens it for querying and
    reads its exit code, and calls nothing else (the fake has no TerminateProcess)."""
    from cifarlab.runs.lock import windows_process_alive

    class Kernel32:
        def __init__(self, handle, code=259, error=0):
            self.handle, self.code, self.error, self.closed = handle, code, error, False

        def OpenProcess(self, access, inherit, pid):  # noqa: N802 - the Windows API's name
            assert access == 0x1000 and pid == 42  # PROCESS_QUERY_LIMITED_INFORMATION
            return self.handle

        def GetExitCodeProcess(self, handle, ref):  # noqa: N802
            ref._obj.value = self.code
            return 1

        def GetLastError(self):  # noqa: N802
            return self.error

        def CloseHandle(self, handle):  # noqa: N802
            self.closed = True

    running = Kernel32(7)
    assert windows_process_alive(42, running) and running.closed
    assert not windows_process_alive(42, Kernel32(7, code=0))  # exited
    assert windows_process_alive(42, Kernel32(0, error=5))  # someone else's: access denied
    assert not windows_process_alive(42, Kernel32(0, error=87))  # no such process
