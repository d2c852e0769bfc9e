"""Never lose a run: resume after SIGKILL / SIGINT / SIGTERM with identical results, the lock,
a NaN stop that keeps the last good checkpoint, a full disk, and refused checkpoints."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import cifarlab.runs.checkpoint
from cifarlab import load_model, resume, train
from cifarlab.cli import main
from cifarlab.errors import CheckpointError, CifarlabError, TrainingError
from cifarlab.runs import RunFolder, read_checkpoint
from conftest import TINY, SignalAtEpochEnd, fit_in, rows, tiny_args, tiny_config, tiny_trainer

EPOCHS = 6


def cli_args(data, run):
    return tiny_args(data, run, batch_size=16, val_size=100, epochs=EPOCHS, warmup=0.2,
                     num_threads=1)


def run_cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "cifarlab", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finished_epochs(run):
    try:
        return len((run / "metrics.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def reference(bigger_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    p = run_cli(*cli_args(bigger_data, run))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    return run


def assert_same_run(run, ref):
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, ref))
    for key in ("test_top1", "test_top5", "test_loss", "best_epoch", "best_val_acc", "epochs",
                "per_class"):
        assert a[key] == b[key], key
    assert rows(run) == rows(ref)
    wa, wb = (RunFolder(r).checkpoint("best").state_dict for r in (run, ref))
    for k in wb:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6), k


@pytest.mark.parametrize("sig, code, after", [(signal.SIGKILL, -9, 2), (signal.SIGINT, 130, 1),
                                              (signal.SIGTERM, 143, 3)])
def test_stopped_then_resumed_run_equals_the_uninterrupted_one(bigger_data, reference,
                                                               tmp_path, sig, code, after):
    run = tmp_path / "run"
    p = run_cli(*cli_args(bigger_data, run))
    deadline = time.time() + 120
    while finished_epochs(run) < after and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    # The race this test means: the run is stopped while it trains, after `after` epochs.
    assert p.poll() is None and after <= finished_epochs(run) < EPOCHS, "not stopped mid-run"
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert not (run / "metrics.json").exists()
    if sig != signal.SIGKILL:  # a clean stop says how to go on, and releases the folder
        assert f"cifarlab train --resume {run}" in err and err.count("\n") == 1
        assert not (run / "lock").exists()
        assert f"stopped by {sig.name}" in (run / "train.log").read_text()
    else:
        assert (run / "lock").exists()  # left behind by the killed process: stale, taken over
    done = run_cli("--resume", str(run), "--num-threads", "1")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "resuming after epoch" in out
    assert_same_run(run, reference)


@pytest.mark.cpu_kinds
def test_resume_in_process_with_ema_mixup_and_a_mid_epoch_stop(fake_data, tmp_path):
    settings = dict(epochs=3, ema_decay=0.9, mixup_alpha=0.4)
    ref = train(tiny_config(fake_data, tmp_path / "ref", **settings), quiet=True)
    t = tiny_trainer(fake_data, **settings)
    calls = []

    def stop_at_step_12(module, inputs, output):  # like Ctrl-C in epoch 2
        if module.training:
            calls.append(1)
        if len(calls) == 12:
            t.stop.signum = signal.SIGINT

    t.nets.model.register_forward_hook(stop_at_step_12)
    with pytest.raises(CifarlabError, match="stopped by SIGINT in epoch 2"):
        fit_in(t, tmp_path / "run")
    saved = RunFolder(tmp_path / "run").checkpoint("last").resume
    assert saved["ranks"][0]["partial"]["step"] > 0
    assert RunFolder(tmp_path / "run").status() == (
        "stopped", f"cifarlab train --resume {tmp_path / 'run'}")
    moved = shutil.copytree(fake_data, tmp_path / "moved")  # the data, in another folder
    m = resume(tmp_path / "run", quiet=True, data_dir=str(moved))
    assert RunFolder(tmp_path / "run").status() == ("finished", "")
    assert m["test_top1"] == ref["test_top1"] and m["test_loss"] == ref["test_loss"]
    assert rows(tmp_path / "run") == rows(tmp_path / "ref")
    # its config.json says where it went on, its log what changed
    assert RunFolder(tmp_path / "run").settings().data_dir == str(moved)
    assert f"resumed with --data-dir {moved} (it ran with " in \
        (tmp_path / "run" / "train.log").read_text()


def test_a_run_from_before_data_json_is_not_resumed_on_other_data(tmp_path):
    """An older run (no data.json) whose data folder gained images: one line, not an
    IndexError from its saved per-image flips."""
    from conftest import write_fake_cifar

    data = tmp_path / "data"
    write_fake_cifar(data)
    t = tiny_trainer(data, epochs=2, alternate_flip=True)
    t.nets.model.register_forward_hook(
        lambda mod, inp, out: setattr(t.stop, "signum", signal.SIGINT) or out)
    with pytest.raises(CifarlabError, match="stopped by SIGINT"):
        fit_in(t, tmp_path / "run")
    assert not (tmp_path / "run" / "data.json").exists()  # as runs before it were
    write_fake_cifar(data, per_file=80)
    with pytest.raises(CifarlabError, match="cannot resume on other data than it started "
                                            r"with \(250 training images there, 350 here\)"):
        resume(tmp_path / "run", quiet=True)


def hold_lock(path):
    """A process that takes the run lock at `path` and keeps it until killed."""
    code = ("import sys, time; from pathlib import Path; from cifarlab.runs.lock import RunLock; "
            "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                             text=True)
    assert owner.stdout.readline().strip() == "held"
    return owner


def test_a_folder_in_use_is_refused_and_a_stale_lock_taken_over(fake_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    owner = hold_lock(run / "lock")
    try:
        with pytest.raises(CifarlabError, match=f"in use by process {owner.pid}"):
            train(data_dir=str(fake_data), run_dir=str(run), quiet=True, **TINY)
        assert not (run / "config.json").exists()  # refused before writing anything
    finally:
        owner.kill()
        owner.wait()
    with pytest.raises(CifarlabError, match="not found"):  # a failed start frees the folder
        train(data_dir=str(tmp_path / "nothing"), download=False, run_dir=str(run), quiet=True,
              **TINY)
    assert not (run / "lock").exists()
    m = train(data_dir=str(fake_data), run_dir=str(run), quiet=True, **TINY)
    assert m["epochs"] == 2 and not (run / "lock").exists()


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(fake_data, tmp_path):
    t = tiny_trainer(fake_data, epochs=3)
    t.nets.model.register_forward_hook(
        lambda mod, inp, out: out * float("nan") if t.state.epoch >= 1 else out)
    with pytest.raises(TrainingError, match="became nan in epoch 2.*epoch 1"):
        fit_in(t, tmp_path / "run")
    state, message = RunFolder(tmp_path / "run").status()  # recorded by the run folder
    assert state == "failed" and "became nan in epoch 2" in message
    last = RunFolder(tmp_path / "run").checkpoint("last")
    assert last.epoch == 1
    assert all(torch.isfinite(v).all() for v in last.state_dict.values()
               if v.is_floating_point())


def test_nan_in_the_first_epoch_names_no_checkpoint_that_does_not_exist(fake_data, tmp_path):
    t = tiny_trainer(fake_data, epochs=2)
    t.nets.model.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    with pytest.raises(TrainingError, match="epoch 1; no epoch had finished, so nothing was "
                                            "kept"):
        fit_in(t, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_weights_gone_bad_under_a_finite_loss_are_never_kept(fake_data, tmp_path):
    """A BatchNorm statistic can become NaN while every batch's loss stays finite (training
    normalises with the batch's own statistics): the run fails instead of keeping them."""
    t = tiny_trainer(fake_data, epochs=3)
    norm = next(m for m in t.nets.model.modules() if isinstance(m, torch.nn.BatchNorm2d))

    def spoil(optimizer, args, kwargs):  # after a step: no graph holds the statistic
        if t.state.epoch >= 1:
            norm.running_var.fill_(float("nan"))

    t.optimizer.register_step_post_hook(spoil)
    with pytest.raises(TrainingError, match=r"weights became NaN or infinite \(.*running_var"
                                            r".*in epoch 2; the last good weights \(epoch 1\)"):
        fit_in(t, tmp_path / "run")
    assert RunFolder(tmp_path / "run").checkpoint("best").epoch == 1


def test_broken_weights_and_empty_splits_give_no_figure(trained_run, fake_data, tmp_path,
                                                       capsys):
    """NaN outputs or a split of no images are errors that say why, never a score."""
    ckpt = read_checkpoint(trained_run / "best.pt")
    weights = {k: v.clone() for k, v in ckpt.state_dict.items()}
    name = next(k for k in weights if k.endswith("running_var"))
    weights[name].fill_(float("nan"))
    run = tmp_path / "broken"
    shutil.copytree(trained_run, run)
    cifarlab.runs.checkpoint.write_checkpoint(run / "best.pt", config=ckpt.config,
                                              classes=ckpt.classes, weights=weights, epoch=1)
    (tmp_path / "img").mkdir()
    from PIL import Image
    Image.new("RGB", (32, 32), (9, 99, 199)).save(tmp_path / "img" / "a.png")
    for command in (["evaluate", str(run)], ["predict", str(run), str(tmp_path / "img")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "outputs are not numbers (NaN or infinite)" in err and "nan%" not in err
    no_val = tmp_path / "no-val"
    train(data_dir=str(fake_data), run_dir=str(no_val), quiet=True,
          **{**TINY, "epochs": 1, "val_size": 0})
    assert main(["evaluate", str(no_val), "--split", "val"]) == 2
    assert "the run has no val split here" in capsys.readouterr().err


def test_a_full_disk_is_a_clear_error_and_the_previous_checkpoint_stays(fake_data, tmp_path,
                                                                        monkeypatch):
    real_save, saves = torch.save, []

    def save_until_disk_full(obj, f, *a, **kw):
        saves.append(f)
        if len(saves) > 2:  # best.pt and last.pt of epoch 1 fit, then the disk is full
            with open(f, "wb") as out:
                out.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(cifarlab.runs.checkpoint.torch, "save", save_until_disk_full)
    with pytest.raises(CheckpointError, match="No space left on device; the previous best.pt "
                                              "is unchanged"):
        train(data_dir=str(fake_data), run_dir=str(tmp_path / "run"), quiet=True, **TINY)
    monkeypatch.setattr(cifarlab.runs.checkpoint.torch, "save", real_save)
    assert RunFolder(tmp_path / "run").checkpoint("last").epoch == 1
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_an_unwritable_run_folder_is_one_clear_line(fake_data, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    args = ["train", "--data-dir", str(fake_data), "--val-size", "50",
            "--run-dir", str(tmp_path / "file" / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("cifarlab: error: cannot create run folder") and err.count("\n") == 1


def test_resume_misuse_is_refused(fake_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(data_dir=str(fake_data), run_dir=str(run), quiet=True, **TINY)
    for args, message in [(["--resume", str(run)], "finished already"),
                          (["--resume", str(tmp_path)], "holds no last.pt"),
                          (["--resume", str(run), "--lr", "1"], "only --device"),
                          (["--resume", str(run / "best.pt")],
                           f"is a file; give the folder: cifarlab train --resume {run}"),
                          (["--run-dir", str(run)], "already holds a run")]:
        assert main(["train", *args]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("settings, header, message", [
    (dict(model="resnet18", model_args={}), {}, "weights do not fit model 'resnet18'"),
    (dict(model="resnet18"), {}, "cannot build its model"),
    (dict(model="resnet999"), {}, "settings cannot be used here: unknown model 'resnet999'"),
    ({}, dict(classes=[f"c{i}" for i in range(100)]),
     "do not fit model 'fastnet' with 100 classes"),
    ({}, dict(format="something-else"), "not a cifarlab checkpoint"),
    ({}, dict(config=None), "not a usable cifarlab checkpoint: it has no settings"),
    ({}, dict(version="3"), "its version is not a number"),
    ({}, dict(classes="cat"), "it has no list of class names"),
    ({}, dict(classes=[]), "it has no list of class names"),
    ({}, dict(classes=["a", "b", "c"]), "do not fit model 'fastnet' with 3 classes"),
    ({}, dict(state_dict={"w": "not a tensor"}), "weights are not a mapping of names"),
    ({}, dict(epoch="two"), "its epoch is of the wrong type"),
    (dict(mean=[0.5, 0.5]), {}, "mean needs 3 values"),
])
def test_checkpoints_that_do_not_fit_are_refused(trained_run, tmp_path, settings, header,
                                                 message):
    state = torch.load(trained_run / "best.pt", weights_only=True)
    state = {**state, "config": {**state["config"], **settings}, **header}
    torch.save(state, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "x.pt")


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "cifarlab-checkpoint", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_run_folder_of_the_previous_format_still_resumes(fake_data, tmp_path):
    """last.pt of cifarlab before warm-up became a share of the run: `warmup_epochs`, no
    whitening-bias window, fastnet with torch's BatchNorm eps. It resumes meaning the same."""
    old = dict(epochs=3, warmup=1 / 3, whiten_bias_share=1.0,
               model_args={**TINY["model_args"], "bn_eps": 1e-5})
    ref = train(tiny_config(fake_data, tmp_path / "ref", **old), quiet=True)
    t = tiny_trainer(fake_data, **old)
    with pytest.raises(CifarlabError, match="stopped by SIGINT in epoch 2 at step 0"):
        fit_in(t, tmp_path / "run", SignalAtEpochEnd())
    last = tmp_path / "run" / "last.pt"
    state = torch.load(last, weights_only=True)
    config = state["config"]
    for key in ("warmup", "whiten_bias_share"):
        del config[key]
    config["warmup_epochs"] = 1.0  # one epoch of three, in the old terms
    del config["model_args"]["bn_eps"]  # the old fastnet's default
    torch.save({**state, "version": 1, "config": config, "model": "fastnet",
                "model_args": config["model_args"], "mean": config["mean"],
                "std": config["std"], "num_classes": 10}, last)
    m = resume(tmp_path / "run", quiet=True)
    assert (m["test_top1"], m["test_loss"]) == (ref["test_top1"], ref["test_loss"])
    saved = read_checkpoint(last).config
    assert saved.warmup == pytest.approx(1 / 3) and saved.whiten_bias_share == 1.0
    assert saved.model_args["bn_eps"] == 1e-5


def test_a_dead_or_empty_lock_is_taken_over_and_only_one_racer_wins(tmp_path):
    """A lock whose process is gone, or an empty one (a full disk at start), is free; of many
    processes taking over the same dead lock at once, exactly one gets it."""
    from cifarlab.runs.lock import RunLock

    lock = tmp_path / "lock"
    lock.write_text("")  # what a full disk at start left
    RunLock(lock).acquire().release()
    killed = hold_lock(lock)
    killed.kill()
    killed.wait()
    assert lock.exists() and RunLock(lock).live_owner() is None  # SIGKILL frees the folder
    for round in range(3):  # forked racers: each a process of its own, started at once
        go, done, results = tmp_path / f"go{round}", tmp_path / f"done{round}", []
        for _ in range(6):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the racer
                os.close(read)
                while not go.exists():
                    time.sleep(0.0005)
                try:
                    RunLock(lock).acquire()
                    os.write(write, b"won")
                    while not done.exists():  # holding it until every racer has tried
                        time.sleep(0.001)
                except CifarlabError:
                    os.write(write, b"lost")
                os._exit(0)  # the lock dies with this process, unreleased, as a crash's
            os.close(write)
            results.append((pid, read))
        go.touch()
        said = [os.read(read, 8).decode() for _, read in results]  # each racer's answer
        done.touch()
        for pid, read in results:
            os.waitpid(pid, 0)
            os.close(read)
        assert sorted(said) == ["lost"] * 5 + ["won"], said


def _signal_self(signum):
    """A stand-in for a phase that a signal arrives in: the signal, then the phase's work."""
    def phase(*args, **kwargs):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here, long before the end
        raise AssertionError("the signal did not stop the command")
    return phase


def test_sigterm_in_the_final_test_stops_like_ctrl_c_and_resumes(fake_data, tmp_path,
                                                                 monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr("cifarlab.jobs.training_run.test_once", _signal_self(signal.SIGTERM))
    assert main(["train", *tiny_args(fake_data, run)]) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert RunFolder(run).status() == ("stopped", f"cifarlab train --resume {run}")
    assert not (run / "lock").exists()
    monkeypatch.undo()
    m = resume(run, quiet=True)
    assert m["epochs"] == TINY["epochs"] and RunFolder(run).status() == ("finished", "")


def test_a_stop_while_the_report_is_drawn_leaves_a_finished_run(fake_data, tmp_path,
                                                               monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr("cifarlab.reporting.report.write_report",
                        _signal_self(signal.SIGTERM))
    assert main(["train", *tiny_args(fake_data, run, report=True)]) == 143
    said = capsys.readouterr()
    state = json.loads((run / "state.json").read_text())
    hint = f"draw it with: cifarlab report {run}"
    assert state["state"] == "finished" and hint in state["message"] and hint in said.out
    assert not (run / "lock").exists() and "resume" not in state


def test_sigterm_in_predict_is_one_line(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("cifarlab.inference.predict.predict_logits",
                        _signal_self(signal.SIGTERM))
    from PIL import Image
    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "a.png")
    assert main(["predict", str(trained_run), str(tmp_path / "a.png")]) == 143
    err = capsys.readouterr().err
    assert err == "cifarlab: stopped by SIGTERM\n"
