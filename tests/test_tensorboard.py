"""--tensorboard: event files that match metrics.csv, also across a stop and a resume."""


import pytest

from cifarlab import resume, train
from cifarlab.errors import CifarlabError
from conftest import TINY, SignalAtEpochEnd, fit_in, rows, tiny_trainer

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="TensorBoard tests need the tensorboard extra (in dev)")


def events(run):
    """{tag: [(step, value), ...]} of every scalar in RUN/tensorboard, and the image tags."""
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"),
                                             size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    return scalars, acc.Tags()["images"]


def settings(fake_data, **kw):
    return {**TINY, "data_dir": str(fake_data), "epochs": 3, "tensorboard": True,
            "log_every": 2, **kw}


def check_against_csv(run, steps_per_epoch, total_steps):
    scalars, images = events(run)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        expected = [(r["epoch"] * steps_per_epoch, r[key]) for r in rows(run)]
        got = scalars[f"epoch/{key}"]
        assert [s for s, _ in got] == [s for s, _ in expected], key  # each epoch once
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-5), key
    assert [s for s, _ in scalars["step/loss"]] == list(range(2, total_steps + 1, 2))
    assert [s for s, _ in scalars["step/lr"]] == list(range(2, total_steps + 1, 2))
    assert {"test/confusion", "test/predictions"} <= set(images)


def test_event_files_match_metrics_csv(fake_data, tmp_path):
    run = tmp_path / "run"
    metrics = train(run_dir=str(run), quiet=True, **settings(fake_data))
    spe = 250 // TINY["batch_size"]  # 250 training images, whole batches
    check_against_csv(run, spe, 3 * spe)
    hparams = event_accumulator.EventAccumulator(str(run / "tensorboard" / "hparams"))
    hparams.Reload()
    assert hparams.Scalars("hparam/test_top1")[0].value == pytest.approx(metrics["test_top1"])


def test_a_stopped_run_resumes_its_curves_without_gaps_or_repeats(fake_data, tmp_path):
    run = tmp_path / "run"
    t = tiny_trainer(fake_data, **{k: v for k, v in settings(fake_data).items()
                                   if k != "data_dir"})
    with pytest.raises(CifarlabError, match="stopped by SIGINT in epoch 2 at step 0"):
        fit_in(t, run, SignalAtEpochEnd())
    spe = t.steps_per_epoch
    # What a run killed after its checkpoint leaves behind: events past the resume point.
    from torch.utils.tensorboard import SummaryWriter

    orphan = SummaryWriter(str(run / "tensorboard"))
    for step in range(spe + 1, spe + 4):
        orphan.add_scalar("step/loss", 99.0, step)
    orphan.add_scalar("epoch/train_loss", 99.0, 2 * spe)
    orphan.close()
    resume(run, quiet=True)
    check_against_csv(run, spe, 3 * spe)
    scalars, _ = events(run)
    assert 99.0 not in [v for _, v in scalars["step/loss"] + scalars["epoch/train_loss"]]


def test_without_tensorboard_installed_the_message_says_what_to_install(fake_data, tmp_path,
                                                                       monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(CifarlabError, match=r"pip install 'cifarlab\[tensorboard\]'"):
        train(run_dir=str(tmp_path / "run"), quiet=True, **settings(fake_data))
