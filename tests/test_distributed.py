"""torchrun with gloo on the CPU: two processes train one run, as one process would."""

import json
import signal
import subprocess
import sys
import time

import pytest

from cifarlab.runs.values import as_argv
from conftest import rows, tiny_args

RUN = dict(val_size=100, epochs=3, report=False, num_threads=1, device="cpu")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def train_cmd(data, run, nproc, *extra):
    launcher = [*TORCHRUN, str(nproc)] if nproc > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "cifarlab", "train", *as_argv(
        {"data_dir": str(data), "run_dir": str(run), **RUN}), *extra],
        capture_output=True, text=True, timeout=300)


def test_two_processes_match_one_with_the_same_global_batch(bigger_data, tmp_path):
    """Without BatchNorm, dropout or augmentation, averaging the gradients of two halves of
    each batch is the gradient of the whole batch: the runs agree to float precision."""
    recipe = ["--preset", "tutorial", "--model-args", '{"dropout": 0}', "--batch-size", "32"]
    two = train_cmd(bigger_data, tmp_path / "two", 2, *recipe)
    assert two.returncode == 0, two.stderr[-3000:]
    one = train_cmd(bigger_data, tmp_path / "one", 1, *recipe)
    assert one.returncode == 0, one.stderr
    assert two.stdout.count("epoch   1/3") == 1 and two.stdout.count("test accuracy") == 1
    for a, b in zip(rows(tmp_path / "two"), rows(tmp_path / "one"), strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    m2, m1 = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("two", "one"))
    assert m2["test_top1"] == pytest.approx(m1["test_top1"])
    assert m2["test_loss"] == pytest.approx(m1["test_loss"], rel=1e-3)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "best.pt", "calibration.json", "cifarlab-run.json", "config.json", "data.json",
        "last.pt", "metrics.csv", "metrics.json", "state.json", "train.log"]


def fastnet_args(data, run, **kw):
    """TINY's fastnet with its augmentation, for a torchrun run on `data`."""
    return tiny_args(data, run, **{**RUN, **kw})


@pytest.fixture(scope="module")
def fastnet_run(bigger_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp-fastnet") / "run"
    r = subprocess.run([*TORCHRUN, "2", "-m", "cifarlab", "train",
                        *fastnet_args(bigger_data, run)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def test_fastnet_with_batchnorm_and_augmentation_trains_in_two_processes(bigger_data,
                                                                         fastnet_run, tmp_path):
    m = json.loads((fastnet_run / "metrics.json").read_text())
    assert m["epochs"] == 3 and m["test_top1"] > 30  # 10 classes: well above chance
    bad = subprocess.run([*TORCHRUN, "2", "-m", "cifarlab", "train", *fastnet_args(
        bigger_data, tmp_path / "bad", batch_size=33)], capture_output=True, text=True,
        timeout=300)
    assert bad.returncode != 0 and "must divide evenly among 2 processes" in bad.stderr


def test_a_torchrun_run_stopped_by_sigterm_resumes_exactly(bigger_data, fastnet_run, tmp_path):
    """torchrun passes SIGTERM to its workers: they stop together, each process's share of
    the stopped epoch is saved, and a resumed two-process run ends as the uninterrupted one."""
    run = tmp_path / "run"
    cmd = [*TORCHRUN, "2", "-m", "cifarlab", "train", *fastnet_args(bigger_data, run)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.csv").exists() or len(rows(run)) < 1:
        assert p.poll() is None and time.time() < deadline, "run ended before it was stopped"
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert "stopped by SIGTERM" in (run / "train.log").read_text()
    assert "torchrun --nproc-per-node 2 (as before) -m cifarlab train --resume" in err
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run([*TORCHRUN, "2", "-m", "cifarlab", "train", "--resume", str(run),
                              "--num-threads", "1", "--device", "cpu"], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(run) == rows(fastnet_run)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, fastnet_run))
    assert (a["test_top1"], a["test_loss"], a["best_epoch"]) == (b["test_top1"], b["test_loss"],
                                                                 b["best_epoch"])


def test_a_torchrun_process_exits_without_python_shutdown(monkeypatch):
    """In a torchrun job the command leaves with os._exit and the command's exit code: gloo's
    worker threads, still releasing the last collective's tensors while Python shuts down,
    aborted about one two-process run in eight (SIGABRT instead of exit code 0)."""
    from cifarlab import cli

    class Exited(Exception):
        pass

    def fake_exit(code):
        raise Exited(code)

    monkeypatch.setattr(cli, "main", lambda: 143)
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(Exited) as e:
        cli.run()
    assert e.value.args == (143,)
    monkeypatch.setenv("WORLD_SIZE", "1")  # a single process shuts down as usual
    with pytest.raises(SystemExit) as s:
        cli.run()
    assert s.value.code == 143


def worker_pids(run, rank: int) -> list[int]:
    """The first attempt's worker processes of `rank` training into `run` (from /proc)."""
    from pathlib import Path

    found = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0") if d.name.isdigit() else []
            env = (d / "environ").read_bytes().split(b"\0") if cmd else []
        except OSError:
            continue
        if (str(run).encode() in cmd and f"RANK={rank}".encode() in env
                and b"TORCHELASTIC_RESTART_COUNT=0" in env):
            found.append(int(d.name))
    return found


@pytest.mark.parametrize("when", ["first epoch", "second epoch"])
def test_an_elastic_run_goes_on_by_itself_when_a_worker_is_killed(bigger_data, fastnet_run,
                                                                  tmp_path, when):
    """`torchrun --max-restarts 1`: rank 1 killed with SIGKILL; torchrun restarts the group and
    cifarlab continues the run from its last.pt (in the first epoch: starts it again), to the
    uninterrupted run's rows, test result and weights."""
    import os

    import torch

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "--max-restarts", "1", "-m", "cifarlab", "train",
           *fastnet_args(bigger_data, run)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    need = 0 if when == "first epoch" else 1
    while len(rows(run)) < need or not worker_pids(run, 1) or not (run / "data.json").exists():
        assert p.poll() is None and time.time() < deadline, "the run ended before the kill"
        time.sleep(0.01)
    os.kill(worker_pids(run, 1)[0], signal.SIGKILL)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    if when == "second epoch":
        assert "torchrun restarted the group (restart 1); continuing" in err
    assert rows(run) == rows(fastnet_run)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, fastnet_run))
    assert (a["test_top1"], a["test_loss"]) == (b["test_top1"], b["test_loss"])
    wa, wb = (torch.load(r / "best.pt", weights_only=True)["state_dict"]
              for r in (run, fastnet_run))
    assert all(torch.equal(wa[k], wb[k]) for k in wb)


def test_an_elastic_run_needs_its_folder_named(bigger_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "1", "--max-restarts", "1", "-m", "cifarlab", "train",
                        "--data-dir", str(bigger_data), "--epochs", "1"], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "under torchrun --max-restarts, give --run-dir" in r.stderr


def test_two_launchers_as_two_nodes_train_as_one_launcher_with_two_processes(
        bigger_data, fastnet_run, tmp_path):
    """The README's multi-node command, both nodes on this machine: one process each, a c10d
    rendezvous on 127.0.0.1; the same run as `--nproc-per-node 2`."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank",
         str(rank), "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
         f"127.0.0.1:{port}", "--rdzv-id", "cifarlab-test", "-m", "cifarlab", "train",
         *fastnet_args(bigger_data, run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for rank in (0, 1)]
    results = [n.communicate(timeout=300) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert rows(run) == rows(fastnet_run)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, fastnet_run))
    assert (a["test_top1"], a["test_loss"]) == (b["test_top1"], b["test_loss"])
