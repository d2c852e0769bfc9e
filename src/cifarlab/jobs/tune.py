"""Hyperparameter search with Optuna: TPE sampling, median pruning on the validation accuracy
reported after every epoch, and a shared storage (SQLite on one machine, PostgreSQL or MySQL for
many) so that several worker processes or machines work on one study.

The test set is never used while searching: trials are chosen on the validation split. When the
search is over, the best trial's checkpoint is evaluated once on the test set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError, ConfigError, Pruned, TrainingError, first_line
from cifarlab.inference import evaluation
from cifarlab.jobs.study_storage import (
    fail_stale_journal_trials,
    journal_heartbeat,
    masked,
    open_storage,
)
from cifarlab.jobs.training_run import run_training
from cifarlab.runs import Config, RunFolder, StudyFolder, make_config
from cifarlab.runs.config import field_types
from cifarlab.runs.run_data import load_data_for
from cifarlab.runs.values import read_config_file
from cifarlab.training import Hook

RUNS_DIR = "runs/tune"  # trials go in RUNS_DIR/STUDY/trial-NNNN
HEARTBEAT = 60  # seconds between a running trial's heartbeats

def default_space(base: Config) -> dict[str, dict[str, Any]]:
    """The search space around the recipe being tuned (`--space FILE` replaces it): its own
    learning rates and weight decay times 1/3 to 3 (log scale), label smoothing up to twice
    its own, half to twice its batch, and its epochs give or take a half. A fixed range would
    be wrong for most presets (the tutorial CNN, without BatchNorm, diverges at fastnet's lr)."""
    def around(value: float, factor: float = 3.0) -> dict[str, Any]:
        return {"low": value / factor, "high": value * factor, "log": True}

    space = {"lr": around(base.lr)}
    if base.optimizer == "muon":
        space["muon_lr"] = around(base.muon_lr, 2.0)
    if base.weight_decay > 0:
        space["weight_decay"] = around(base.weight_decay)
    space["label_smoothing"] = {"low": 0.0, "high": min(0.4, max(0.2, 2 * base.label_smoothing))}
    space["batch_size"] = {"choices": sorted({max(16, base.batch_size // 2), base.batch_size,
                                              base.batch_size * 2})}
    half = max(1, base.epochs // 2)
    space["epochs"] = {"low": max(max(1, base.low_res_epochs), base.epochs - half),
                       "high": base.epochs + half}
    return space


def read_space(path: str | os.PathLike | None,
               config_file: str | os.PathLike | None = None
               ) -> dict[str, dict[str, Any]] | None:
    """The search space: FILE's `tune` table (or the whole FILE), else the `tune` table of the
    training config file, else None (`default_space` of the recipe). It maps Config field
    names to {low, high[, log][, step]} or {choices: [...]}."""
    if path is None:
        path = config_file
        if path is None or "tune" not in read_config_file(path):
            return None
    raw = read_config_file(path)
    space = raw.get("tune", raw)
    fields = field_types()
    for name, spec in space.items():
        if name not in fields or name in ("run_dir", "preset", "data_dir", "seed"):
            raise ConfigError(f"{path}: {name!r} cannot be searched; use Config fields such "
                              "as lr, weight_decay, label_smoothing, batch_size, epochs")
        if not isinstance(spec, dict) or not ("choices" in spec or {"low", "high"} <= set(spec)):
            raise ConfigError(f"{path}: {name} needs {{low, high}} or {{choices: [...]}}")
    return space


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per searched setting, drawn by the trial's sampler."""
    hints = field_types()
    params = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif hints[name] is int:
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                             step=int(spec.get("step", 1)),
                                             log=bool(spec.get("log", False)))
        else:
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               step=spec.get("step"),
                                               log=bool(spec.get("log", False)))
    return params


def open_study(storage: str, study: str, seed: int | None = None,
               heartbeat: int = HEARTBEAT) -> Any:
    """Create or join the study (`storage`: a database URL or journal:PATH). Workers
    heartbeat while a trial runs; a trial whose worker died (no heartbeat for twice the
    interval) is marked failed and the study goes on."""
    try:
        import optuna
    except ImportError:
        raise CifarlabError("cifarlab tune needs Optuna: pip install 'cifarlab[tune]'") from None
    # Errors only: a failed trial is our one line (_log_pruned), not Optuna's traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rdb = open_storage(storage, heartbeat)
    return optuna.create_study(
        study_name=study, storage=rdb, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))


def tune(*, trials: int, preset: str | None = None, config_file: str | os.PathLike | None = None,
         space: dict[str, dict[str, Any]] | None = None, storage: str | None = None,
         study_name: str | None = None, runs_dir: str | os.PathLike = RUNS_DIR,
         data_dir: str | None = None, timeout: float | None = None,
         sampler_seed: int | None = None, heartbeat: int = HEARTBEAT,
         log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run `trials` trials in this worker, then test the best trial once if the study is idle.
    `space`: the search space (default: `read_space(None, config_file)`)."""
    log = log or _say
    import optuna

    base = make_config(preset, config_file, **({"data_dir": data_dir} if data_dir else {}))
    space = (read_space(None, config_file) if space is None else space) or default_space(base)
    if base.val_size == 0:
        raise ConfigError("tuning chooses on the validation split: set --val-size above 0 in "
                          "the preset or config file (the test set must not guide the search)")
    study_name = study_name or f"cifarlab-{base.preset}"
    folder = StudyFolder(Path(runs_dir) / study_name)
    folder.path.mkdir(parents=True, exist_ok=True)
    storage = storage or folder.default_storage()
    study = open_study(storage, study_name, sampler_seed, heartbeat)
    data = load_data_for(base)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        run_dir = folder.trial_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        cfg = Config.from_dict({**base.to_dict(), **params, "run_dir": str(run_dir),
                                "report": False})

        try:
            result = _trial_run(study, trial, cfg, data, TrialReport(trial, log), heartbeat, log)
        except Pruned:
            raise optuna.TrialPruned() from None
        log(f"trial {trial.number}: validation {result['best_val_acc']:.2f}% "
            f"(epoch {result['best_epoch']})  {_fmt(params)}")
        return result["best_val_acc"]

    log(f"study {study_name} in {masked(storage)}: {trials} trial(s) in this worker")
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(TrainingError,),
                   callbacks=[_log_pruned(log)])
    return summarize(study, storage, folder, log)


class TrialReport(Hook):
    """A trial's training reports each epoch's validation accuracy to its trial (one line in
    the search's log), and stops when the pruner says the trial is behind."""

    def __init__(self, trial: Any, log: Callable[[str], None]):
        self.trial = trial
        self.log = log

    def on_epoch_end(self, trainer: Any, row: dict[str, Any]) -> None:
        self.log(f"trial {self.trial.number} epoch {row['epoch']}/{trainer.cfg.epochs}: "
                 f"validation {row['val_acc']:.2f}%  ({row['epoch_seconds']:.0f} s)")
        self.trial.report(row["val_acc"], row["epoch"])
        if self.trial.should_prune():
            raise Pruned(f"pruned after epoch {row['epoch']}")


def _trial_run(study: Any, trial: Any, cfg: Config, data: Any, report: Hook,
               heartbeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """One trial's training (a journal study's dead trials failed first, this one's heartbeat
    kept); a TrainingError (a NaN) is kept as the trial's one line."""
    for number in fail_stale_journal_trials(study, heartbeat):
        log(f"trial {number}: failed (its worker stopped sending heartbeats)")
    try:
        with journal_heartbeat(study, trial, heartbeat):
            return run_training(cfg, data=data, quiet=True, test=False, hooks=[report])
    except TrainingError as e:  # one line in the log, and the study goes on
        trial.set_user_attr("failed", first_line(e))
        raise


def summarize(study: Any, storage: str, folder: StudyFolder,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Counts, the best trial, and its one test-set evaluation (once no trial is running)."""
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = {s.lower(): states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    log("trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    try:
        best = study.best_trial
    except ValueError:
        raise CifarlabError("no trial of the study completed; nothing to report") from None
    out = {"study": study.study_name, "storage": masked(storage), "trials": counts,
           "best_trial": best.number, "best_params": best.params,
           "best_val_acc": best.value, "best_run_dir": best.user_attrs.get("run_dir")}
    log(f"best: trial {best.number}, validation {best.value:.2f}%  {_fmt(best.params)}")
    if counts["running"]:
        out["test"] = "not evaluated yet: other workers are still running trials"
        log(f"{counts['running']} trial(s) still running elsewhere; when they finish, test the "
            f"best with: cifarlab tune --trials 0 --study {study.study_name} --storage "
            f"{masked(storage)}")
    elif not RunFolder(out["best_run_dir"] or "").checkpoint_path("best").is_file():
        out["test"] = f"not evaluated: {out['best_run_dir']} is not on this machine"
        log(out["test"])
    elif (m := evaluation.evaluate(out["best_run_dir"]))["split"] != "test":
        out["test"] = "none: the image folder has no test/ (trials compared on validation)"
        log(out["test"])
    else:
        out.update(test_top1=m["top1"], test_top5=m["top5"],
                   test="the best trial's checkpoint, evaluated once on the test set after "
                        "the search (trials were compared on the validation split only)")
        log(f"test accuracy of the best trial's checkpoint (used once, after the search): "
            f"{m['top1']:.2f}% (top-5 {m['top5']:.2f}%)")
    log(f"wrote {folder.write_summary(out)}")
    return out


def _say(message: str) -> None:
    print(message, flush=True)  # one line per trial and epoch, visible at once in a log file


def _fmt(params: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _log_pruned(log: Callable[[str], None]) -> Callable[[Any, Any], None]:
    def callback(study: Any, trial: Any) -> None:
        if trial.state.name == "PRUNED":
            log(f"trial {trial.number}: pruned after epoch {trial.last_step} "
                f"(validation {trial.intermediate_values.get(trial.last_step, 0):.2f}%)")
        elif trial.state.name == "FAIL":
            reason = trial.user_attrs.get("failed", "see its train.log")
            log(f"trial {trial.number}: failed ({reason})  {_fmt(trial.params)}")
    return callback
