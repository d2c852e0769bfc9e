"""A training run from start to finish (jobs/training_run.py): the run folder it leaves, the
settings it resolves once, the one test at the end, and what it promises about repeats."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifarlab import evaluate, load_model, resume, train
from cifarlab.cli import main
from cifarlab.data import load_cifar
from cifarlab.errors import CifarlabError
from cifarlab.models import predict_logits
from cifarlab.runs import Config, RunFolder
from conftest import fit_in, rows, tiny_args, tiny_config, tiny_trainer


@pytest.mark.cpu_kinds
def test_run_folder_holds_everything(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path / "run"), quiet=True)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "metrics.json",
                                               "best.pt", "last.pt", "train.log"}
    assert not list(run.glob("*.tmp")) and not (run / "lock").exists()
    folder = RunFolder(run)
    saved = folder.metrics()
    assert saved == json.loads(json.dumps(m))
    for key in ("test_top1", "test_top5", "per_class", "epochs", "train_seconds",
                "total_seconds", "device", "torch_version"):
        assert key in saved
    # The accuracy is the confusion matrix's diagonal over its total: 100 test images.
    confusion = torch.tensor(saved["confusion"])
    assert confusion.sum() == 100
    assert saved["test_top1"] == pytest.approx(confusion.diag().sum().item())
    assert saved["test_top1"] <= saved["test_top5"] and saved["epochs"] == 2
    epochs = rows(run)
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[saved["best_epoch"] - 1]["val_acc"] == pytest.approx(saved["best_val_acc"])
    assert folder.settings().model == "fastnet" and folder.status() == ("finished", "")
    log = (run / "train.log").read_text()
    assert "epoch   2/2" in log and "test accuracy" in log and "eta" in log


def test_the_settings_are_resolved_once_written_and_never_changed(fake_data, tmp_path):
    cfg = tiny_config(fake_data)
    assert cfg.mean is None and dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3
    t = tiny_trainer(fake_data)
    fit_in(t, tmp_path / "run")
    written = RunFolder(tmp_path / "run").settings()
    assert written == t.cfg  # what trained is what config.json says
    assert written.mean == (0.4914, 0.4822, 0.4465) and written.data_dir == str(fake_data)
    stats = load_cifar("cifar10", fake_data, val_size=0).stats
    assert written == cfg.resolved(str(fake_data), stats)


def test_there_is_no_bare_config():
    with pytest.raises(TypeError):
        Config()


def test_checkpoint_round_trip_gives_the_same_predictions(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path / "run"), quiet=True)
    model = load_model(tmp_path / "run")
    assert not model.training and model.classes[3] == "cat"
    data = load_cifar("cifar10", fake_data, download=False, val_size=50)
    logits = predict_logits(model, data.test_images)  # normalisation is inside the model
    acc = 100 * (logits.argmax(1) == data.test_labels).float().mean().item()
    assert acc == pytest.approx(m["test_top1"])
    again = evaluate(tmp_path / "run" / "best.pt", device="cpu")
    assert again["top1"] == pytest.approx(m["test_top1"])
    assert sum(map(sum, again["confusion"])) == 100


def test_the_test_sees_the_runs_tta(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path / "run", tta="flip-translate"), quiet=True)
    assert evaluate(tmp_path / "run")["tta"] == "flip-translate"
    assert evaluate(tmp_path / "run")["top1"] == pytest.approx(m["test_top1"])


@pytest.mark.cpu_kinds
def test_seeded_runs_repeat_exactly(fake_data, tmp_path):
    a = train(tiny_config(fake_data, tmp_path / "a"), quiet=True)
    b = train(tiny_config(fake_data, tmp_path / "b"), quiet=True)
    c = train(tiny_config(fake_data, tmp_path / "c", seed=1), quiet=True)
    assert a["test_loss"] == b["test_loss"] and a["test_loss"] != c["test_loss"]


def test_early_stopping_on_validation_accuracy(fake_data, tmp_path):
    # With a vanishing learning rate nothing improves after epoch 1.
    m = train(tiny_config(fake_data, tmp_path / "run", epochs=20, patience=2, lr=1e-12,
                          schedule="constant"), quiet=True)
    assert m["epochs"] == 3 and m["best_epoch"] == 1 and m["early_stopped"]
    assert "early stop" in (tmp_path / "run" / "train.log").read_text()


def test_without_validation_split_the_last_epoch_is_kept(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path / "run", val_size=0, epochs=2), quiet=True)
    assert m["best_epoch"] == 2 and m["best_val_acc"] is None


def test_mixup_cutout_rotation_jitter_and_adamw_train(fake_data, tmp_path):
    m = train(tiny_config(fake_data, tmp_path / "run", mixup_alpha=0.4, cutout=8,
                          optimizer="adamw", lr=3e-3, rotation=10,
                          color_jitter=(0.2, 0.2, 0.2, 0.1), epochs=6), quiet=True)
    assert m["epochs"] == 6 and m["best_val_acc"] > 20  # 10 classes: well above chance


def test_a_run_folder_is_never_reused(fake_data, tmp_path):
    train(tiny_config(fake_data, tmp_path / "run"), quiet=True)
    with pytest.raises(CifarlabError, match="already holds a run"):
        train(tiny_config(fake_data, tmp_path / "run"), quiet=True)


def test_metrics_json_is_published_whole_or_not_at_all(fake_data, tmp_path, monkeypatch):
    """metrics.json marks a finished run: a failure while writing it leaves none (the run can
    be resumed), never a truncated one."""
    real = Path.write_text

    def disk_full_on_metrics(self, text, *a, **kw):
        if self.name.startswith("metrics.json"):
            real(self, text[:10], *a, **kw)
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", disk_full_on_metrics)
    with pytest.raises(CifarlabError, match="cannot write .*metrics.json: No space left"):
        train(tiny_config(fake_data, tmp_path / "run"), quiet=True)
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists() and not list(run.glob("*.tmp"))
    monkeypatch.setattr(Path, "write_text", real)
    assert resume(run, quiet=True)["epochs"] == 2


# Five 64 MB blocks allocated, written and freed, before and after keep_freed_memory: glibc
# maps such blocks afresh each time (a page fault per 4 kB page), unless told to keep them.
_REFAULTS = """
import resource, torch
from cifarlab.runtime import keep_freed_memory
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        block = torch.ones(2**24)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
plain = faults()
took = keep_freed_memory()
faults()
# The steady state over three rounds: now and then one round faults a block in again (where
# the heap placed it depends on what the process allocated before).
print(took, plain, min(faults() for _ in range(3)))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator: Linux only")
def test_a_run_on_the_cpu_reuses_freed_memory_instead_of_faulting_it_in_again(
        fake_data, tmp_path, monkeypatch):
    out = subprocess.run([sys.executable, "-c", _REFAULTS], capture_output=True, text=True,
                         check=True).stdout.split()
    took, plain, kept = out[0] == "True", int(out[1]), int(out[2])
    assert took and kept < max(plain / 10, 50), (plain, kept)
    calls = []
    monkeypatch.setattr("cifarlab.runtime.keep_freed_memory", lambda: calls.append(1))
    train(tiny_config(fake_data, tmp_path / "run", epochs=1), quiet=True)
    assert calls == [1]  # set once, by the job, for the whole process


_RELEASES = """
import os, torch
from cifarlab.runtime import keep_freed_memory, release_freed_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
keep_freed_memory()
block = torch.ones(2**26)  # 256 MB, kept after the del
del block
kept = rss_mb()
print(release_freed_memory(), kept - rss_mb())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator: Linux only")
def test_training_hands_the_kept_memory_back_before_the_test(fake_data, tmp_path,
                                                             monkeypatch):
    out = subprocess.run([sys.executable, "-c", _RELEASES], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "True" and float(out[1]) > 200, out  # MB handed back
    calls = []
    monkeypatch.setattr("cifarlab.training.trainer.release_freed_memory",
                        lambda: calls.append(1))
    fit_in(tiny_trainer(fake_data, epochs=1), tmp_path / "run")
    assert calls == [1]


def test_a_users_folder_is_never_overwritten(fake_data, tmp_path, capsys):
    """--run-dir at a folder that cifarlab did not mark as its run: refused, nothing of it
    changed, even when its files have the names a run's files have."""
    users = {"proj": {"config.json": '{"my": 1}'}, "mine": {"notes.txt": "keep"},
             "records": {"data.json": '{"mine": "keep me"}'},
             "csv": {"metrics.csv": "epoch,train_loss\n"},
             "logs": {"train.log": "mine\n", "state.json": "{}"}}
    for name, files in users.items():
        folder = tmp_path / name
        folder.mkdir()
        for file, text in files.items():
            (folder / file).write_text(text)
        assert main(["train", *tiny_args(fake_data, folder)]) == 2
        assert "is a folder that is not a cifarlab run" in capsys.readouterr().err
        assert {p.name: p.read_text() for p in folder.iterdir()} == files
    # a marked run's folder with a file of the user's in it: refused too
    run = tmp_path / "run"
    train(tiny_config(fake_data, run, epochs=1), quiet=True)
    for name in ("best.pt", "last.pt", "metrics.json", "calibration.json"):
        (run / name).unlink()  # what a run writes after its first epoch
    (run / "notes.txt").write_text("keep")
    assert main(["train", *tiny_args(fake_data, run)]) == 2
    assert "holds files that its cifarlab run did not write (notes.txt)" in \
        capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "keep" and (run / "metrics.csv").is_file()


def test_a_run_that_died_in_its_first_epoch_can_start_again(fake_data, tmp_path, capsys):
    """Killed (or NaN) before its first epoch ended: nothing to resume, and its folder takes
    a new run instead of being a dead end."""
    run = tmp_path / "run"
    train(tiny_config(fake_data, run), quiet=True)
    # best.pt stays: a kill while the first checkpoints were written leaves it without last.pt
    for name in ("last.pt", "metrics.json", "report.html", "calibration.json"):
        (run / name).unlink(missing_ok=True)
    (run / "metrics.csv").write_text("epoch,train_loss\n")  # header only: no epoch ended
    (run / "lock").write_text("999999 " + os.uname().nodename + "\n")  # its process is gone
    (run / "last.pt.12345.tmp").write_bytes(b"half")
    assert main(["train", "--resume", str(run)]) == 2
    assert f"start it again with: cifarlab train ... --run-dir {run}" in capsys.readouterr().err
    m = train(tiny_config(fake_data, run), quiet=True)
    assert m["epochs"] == 2 and not list(run.glob("*.tmp"))
    assert (run / "cifarlab-run.json").is_file()
    assert len(rows(run)) == 2  # the new run's rows only
