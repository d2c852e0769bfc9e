"""The loop's side effects are hooks: a hook of one's own sees every phase in order with what
it needs, can stop the run, and the run's own hooks keep its folder and log as before."""

import pytest

from cifarlab.runs import RunFolder
from cifarlab.training import Hook
from cifarlab.training.hooks import progress
from conftest import fit_in, tiny_trainer


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.state.epoch))

    def on_epoch_start(self, trainer, epoch, first):
        self.calls.append(("epoch_start", epoch, first))

    def on_step_end(self, trainer, step):
        self.calls.append(("step", step.epoch, step.step, step.index, float(step.loss)))

    def on_epoch_end(self, trainer, row):
        self.calls.append(("epoch_end", row["epoch"], trainer.state.best_epoch))

    def on_fit_end(self, trainer):
        self.calls.append(("fit_end", trainer.state.epoch))


def test_a_hook_sees_every_phase_in_order(fake_data, tmp_path):
    t = tiny_trainer(fake_data)
    hook = Recorder()
    summary = fit_in(t, tmp_path / "run", hook)
    spe = t.steps_per_epoch
    kinds = [c[0] for c in hook.calls]
    assert kinds == (["fit_start"] + (["epoch_start"] + ["step"] * spe + ["epoch_end"]) * 2
                     + ["fit_end"])
    steps = [c for c in hook.calls if c[0] == "step"]
    assert [c[3] for c in steps] == list(range(2 * spe))  # the run's step index
    assert [c[2] for c in steps] == list(range(spe)) * 2  # the step in its epoch
    assert hook.calls[-1] == ("fit_end", 2) and summary["epochs"] == 2
    # The run's own hooks did what they did before: the folder's files and log lines.
    run = tmp_path / "run"
    assert {"best.pt", "last.pt", "metrics.csv", "train.log"} <= {p.name for p in run.iterdir()}
    log = (run / "train.log").read_text()
    assert "epoch   2/2" in log and log.startswith("cifarlab ")


def test_a_hook_that_raises_stops_the_run_and_fit_end_still_runs(fake_data, tmp_path):
    class Stop(Recorder):
        def on_epoch_end(self, trainer, row):
            super().on_epoch_end(trainer, row)
            raise RuntimeError("enough")

    t = tiny_trainer(fake_data)
    hook = Stop()
    with pytest.raises(RuntimeError, match="enough"):
        fit_in(t, tmp_path / "run", hook)
    assert hook.calls[-1] == ("fit_end", 1)


def test_a_long_first_epoch_is_announced(fake_data, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "LONG_EPOCH", 0.0)
    t = tiny_trainer(fake_data)
    fit_in(t, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("will take about") == 1 and "epoch 1/2 will take about" in log


def test_train_and_resume_take_hooks_of_ones_own(fake_data, tmp_path):
    import cifarlab
    from conftest import TINY

    class Tracker(cifarlab.Hook):
        def __init__(self):
            self.rows = []

        def on_epoch_end(self, trainer, row):
            self.rows.append({**row, "step": trainer.steps_done(row["epoch"])})

    tracker = Tracker()
    m = cifarlab.train(data_dir=str(fake_data), run_dir=str(tmp_path / "run"), quiet=True,
                       hooks=[tracker], **TINY)
    saved = RunFolder(m["run_dir"]).rows()
    assert [r["epoch"] for r in tracker.rows] == [1, 2] == [r["epoch"] for r in saved]
    assert tracker.rows[-1]["step"] > tracker.rows[0]["step"] > 0
