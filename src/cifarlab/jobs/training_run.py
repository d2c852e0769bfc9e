"""`train()` and `resume()`: a run from start to finish. Open the run folder (refused before any
work if it is taken), set up the process, load the data, resolve the settings and write them,
build the Trainer and fit, then evaluate the chosen weights once on the test set and draw the
report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cifarlab.data import DataSplits
from cifarlab.data.splits import changed_splits
from cifarlab.errors import CheckpointError, CifarlabError, TrainingInterrupted
from cifarlab.inference.calibration import calibration_record
from cifarlab.jobs.budget import outcome, parse_duration, plan_run
from cifarlab.metrics import calibrated_metrics, split_metrics
from cifarlab.models import Classifier, predict_logits
from cifarlab.reporting.tables import format_calibration, format_per_class
from cifarlab.runs import PRESETS, Config, RunFolder, make_config, new_run_dir, option_name
from cifarlab.runs.checkpoint import unwrap
from cifarlab.runs.logs import format_duration
from cifarlab.runs.run_data import load_data_for
from cifarlab.runtime import (
    device_name,
    eval_batch_size,
    gpu_peak_memory_mb,
    precision_name,
    prepare_process,
    resolve_device,
)
from cifarlab.training import Hook, Trainer, build_trainer, run_hooks
from cifarlab.training.distributed import init_distributed
from cifarlab.training.hooks.tensorboard import TensorBoard
from cifarlab.version import __version__

RESUME_OVERRIDES = ("device", "num_threads", "data_dir")  # where it runs, not what it computes


def train(config: Config | None = None, *, preset: str | None = None,
          config_file: str | os.PathLike | None = None, quiet: bool = False,
          budget: str | float | None = None, started: float | None = None,
          hooks: Sequence[Hook] = (), **overrides: Any) -> dict[str, Any]:
    """Train a model and evaluate it on the test set; returns metrics.json's content.

    Either pass a Config (from `make_config`), or a preset name / config file / settings,
    e.g. `train(preset="seed", epochs=5, data_dir="path/to/data")`. `budget` ("2m", or
    seconds) trains the best model that fits that wall-clock time from `started` (a
    time.time(); default: now) on this machine, test and report included (`jobs.budget`).
    `hooks` (`cifarlab.Hook`s) are called at each phase of training, after the run's own.
    """
    if budget is not None:
        if config is not None:
            raise CifarlabError("a time budget chooses the settings: give a preset, config "
                                "file or settings, not a Config")
        return train_within(parse_duration(budget), started or time.time(), preset=preset,
                            config_file=config_file, quiet=quiet, hooks=hooks, **overrides)
    cfg = config.validate() if config else make_config(preset, config_file, **overrides)
    continued = elastic_restart(cfg, quiet, hooks)
    return continued if continued is not None else run_training(cfg, quiet=quiet, hooks=hooks)


def train_within(budget: float, started: float, *, quiet: bool = False,
                 hooks: Sequence[Hook] = (), **settings: Any) -> dict[str, Any]:
    """The run `jobs.budget.plan_run` chooses for `budget` seconds from `started`, then one
    line on how it kept to the budget."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CifarlabError("--time plans a run for one process; start it without torchrun")
    plan, data = plan_run(budget, started, quiet=quiet, **settings)
    metrics = run_training(plan.cfg, data=data, quiet=quiet, notes=plan.lines, hooks=hooks,
                           extra={"budget": plan.record()})
    RunFolder(metrics["run_dir"], quiet=quiet).log(
        outcome(plan, time.time() - started, metrics["train_seconds"]))
    return metrics


def elastic_restart(cfg: Config, quiet: bool, hooks: Sequence[Hook] = ()
                    ) -> dict[str, Any] | None:
    """Under `torchrun --max-restarts N`, a worker that dies makes torchrun start the whole
    group again with the same command. The restarted group (TORCHELASTIC_RESTART_COUNT > 0)
    continues the run in `--run-dir` from its last.pt; a run that finished already is done;
    one that never finished an epoch starts again in its folder. Returns the run's metrics,
    or None when this is to be a new run."""
    elastic = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if elastic and not cfg.run_dir:
        raise CifarlabError("under torchrun --max-restarts, give --run-dir: a restarted group "
                            "finds the run it is to continue there")
    if not restarts:
        return None
    folder = RunFolder(cfg.run_dir)
    if folder.finished:
        return folder.metrics() or {}
    if not folder.checkpoint_path("last").is_file():
        return None  # its first epoch never ended: new_run_dir clears the folder
    where = {k: getattr(cfg, k) for k in RESUME_OVERRIDES if getattr(cfg, k) is not None}
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"cifarlab: torchrun restarted the group (restart {restarts}); continuing "
              f"{folder.path} from its last finished epoch", file=sys.stderr, flush=True)
    return resume(folder.path, quiet=quiet, hooks=hooks, **where)


def resume(run_dir: str | os.PathLike, quiet: bool = False, hooks: Sequence[Hook] = (),
           **overrides: Any) -> dict[str, Any]:
    """Continue a stopped run from its last.pt with the run's own settings; only where it runs
    (device, threads, data folder) may change. `hooks`: as `train`'s."""
    unknown = set(overrides) - set(RESUME_OVERRIDES)
    if unknown:
        raise CifarlabError(f"--resume continues with the run's own settings; only "
                            f"{', '.join(option_name(k) for k in RESUME_OVERRIDES)} may be given, "
                            f"not {', '.join(sorted(option_name(k) for k in unknown))}")
    if Path(run_dir).is_file():
        raise CifarlabError(f"--resume takes a run folder, and {run_dir} is a file; give the "
                            f"folder: cifarlab train --resume {Path(run_dir).parent}")
    folder = RunFolder(run_dir)
    folder.check_resumable()
    last = folder.checkpoint("last")
    if last.resume is None:
        raise CheckpointError(f"{last.path} holds no resume state")
    cfg = Config.from_dict({**last.config.to_dict(), **overrides})
    # The folder's config.json says where the run goes on (rewritten once resolved), and its
    # log what changed.
    notes = [f"resumed with {option_name(k)} {v} (it ran with {getattr(last.config, k)})"
             for k, v in overrides.items() if v != getattr(last.config, k)]
    if not quiet:
        for line in notes:
            print(line)
    return run_training(cfg, resume_dir=folder.path, saved=last.resume, quiet=quiet,
                        notes=notes, hooks=hooks)


def run_training(cfg: Config, *, resume_dir: Path | None = None,
                 saved: dict[str, Any] | None = None, data: DataSplits | None = None,
                 quiet: bool = False, test: bool = True, hooks: Sequence[Hook] = (),
                 notes: Sequence[str] = (), extra: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """One run, new or resumed (from `saved`, the resume state of RESUME_DIR's last.pt).
    `data`: already loaded (a search or a budget's plan loads it first). `test=False` keeps
    the test set out (a hyperparameter search); `hooks` are called after the run's own (a
    search's report to its trial). `notes`: lines already printed that the log keeps too;
    `extra`: more for metrics.json. Returns metrics.json's content."""
    dist, device = init_distributed(resolve_device(cfg.device))
    # The folder first: a clash is refused before any work. Only rank 0 writes it.
    path = resume_dir or (new_run_dir(cfg.run_dir, cfg.preset) if dist.is_main else None)
    folder = RunFolder(dist.broadcast(str(path)), quiet=quiet, writer=dist.is_main)
    together = False  # whether every process leaves by the same path
    run = run_hooks(cfg, folder, hooks)
    try:
        with folder:
            for line in notes:
                folder.log(line, echo=False)
            prepare_process(device, cfg.num_threads, cfg.seed)
            if data is None:
                data = load_data_for(cfg)
            record_or_check_data(folder, data, saved)
            cfg = cfg.resolved(cfg.data_folder(), data.stats)  # from here on, unchanged
            if saved is None or notes:
                folder.write_config(cfg)
            trainer = build_trainer(cfg, data, device=device, dist=dist, fresh=saved is None)
            if saved is not None:
                try:
                    trainer.load_state_dict(saved)
                except (CheckpointError, KeyError, TypeError) as e:
                    raise CheckpointError(f"{folder.checkpoint_path('last')}: {e}") from None
            try:
                summary = {**trainer.fit(run.hooks), "run_dir": str(folder.path)}
            except TrainingInterrupted:
                together = True  # the processes decided to stop together
                raise
            together = True
            return dist.broadcast(conclude(trainer, folder, summary, test, extra or {},
                                           run.tensorboard))
    finally:
        run.close()
        dist.close(together)


def conclude(trainer: Trainer, folder: RunFolder, summary: dict[str, Any], test: bool,
             extra: dict[str, Any], board: TensorBoard | None) -> dict[str, Any] | None:
    """Rank 0's end of a run (None on the other processes): metrics.json with `extra`, the
    test set evaluated once (or kept out of a search), the log's last lines and the report."""
    if not trainer.dist.is_main:
        return None
    if not test:
        metrics = {**summary, "test": "not evaluated: the test set is kept out of the search"}
        folder.write_metrics(metrics)
        return metrics
    metrics, logits = test_once(trainer, folder, summary)
    metrics.update(extra)
    folder.write_metrics(metrics)
    finish(trainer, folder, metrics, logits, board)
    return metrics


def record_or_check_data(folder: RunFolder, data: DataSplits,
                         saved: dict[str, Any] | None) -> None:
    """Data the run can be evaluated on (`check_evaluable`); a new run records what it trains
    on (data.json); a resumed one (from `saved`) must find the same training and validation
    images, or its saved data order no longer fits them. A run from before data.json is
    checked for what its checkpoint shows: the classes and the training images' count."""
    check_evaluable(data)
    if saved is None:
        folder.write_data_record(data.fingerprint())
        return
    recorded = folder.data_record()
    trained_on = ("train", "val")
    if recorded is not None:
        changed = changed_splits(recorded, data.fingerprint(trained_on), trained_on)
    else:
        changed = older_run_changes(folder, data, saved)
    if changed:
        raise CifarlabError(f"{folder.path} cannot resume on other data than it started with "
                            f"({changed}); put the data folder back as it was, or start a "
                            "new run")


def older_run_changes(folder: RunFolder, data: DataSplits, saved: dict[str, Any]) -> str:
    """What differs between the data and what a run without data.json saved: its classes,
    and its training images' count (the length of its per-image flips and data orders)."""
    classes = folder.checkpoint("last").classes
    if classes != data.classes:
        return (f"the run's classes are {', '.join(classes[:5])}"
                f"{', ...' if len(classes) > 5 else ''}")
    counts = [len(order) for order in ([saved.get("flip_bits")] + [
        (r.get("partial") or {}).get("order") for r in saved.get("ranks", [])])
        if order is not None]
    train = len(data.train_images)
    if any(n != train for n in counts):
        return f"{counts[0]} training images there, {train} here"
    return ""


def check_evaluable(data: DataSplits) -> None:
    """What the chosen weights are evaluated on at the end: the test set; for an image folder
    without test/, the validation split; without either, nothing: refused."""
    if not data.has_test and not len(data.val_images):
        raise CifarlabError("this dataset has no test/ folder and no validation split: "
                            "nothing to evaluate on; drop --val-size 0 or add test/")


def test_once(trainer: Trainer, folder: RunFolder, summary: dict[str, Any]
              ) -> tuple[dict[str, Any], torch.Tensor]:
    """The chosen weights (best.pt), evaluated once with the run's TTA on the test set — or,
    for an image folder without test/, on the validation split (`evaluated_on` says which;
    the keys are val_top1, ...), their logits divided by the run's temperature (fitted now on
    the validation split, else the preset's): metrics.json's content and those logits."""
    cfg = trainer.cfg
    nets = trainer.nets
    data = trainer.data
    split = data.evaluation_split
    images, labels = data.split(split)
    nets.eval_model.load_state_dict(folder.checkpoint("best").state_dict)
    tester = nets.classifier(cfg, data.classes, tta=cfg.tta, tta_share=cfg.tta_share)
    batch = eval_batch_size(cfg.eval_batch_size, trainer.device)
    temperature = cfg.temperature
    source = settings_temperature_source(cfg)
    if split == "test" and len(data.val_images):  # its own, fitted where the test is not
        record = calibration_record(predict_logits(tester, data.val_images, batch),
                                    data.val_labels, folder.checkpoint_path("best").name)
        folder.write_calibration(record)
        temperature = record["temperature"]
        source = "val"
    logits = predict_logits(tester, images, batch)
    m = calibrated_metrics(logits, labels, data.classes, temperature, source)
    return {
        **split_metrics(m, split), "calibration": m["calibration"], "classes": data.classes,
        **summary,
        "total_seconds": trainer.elapsed(), "train_images": len(data.train_images),
        "gpu_peak_memory_mb": gpu_peak_memory_mb(trainer.device), "device": str(trainer.device),
        "device_name": device_name(trainer.device), "precision": precision_name(nets.amp),
        "torch_version": torch.__version__,
        "cifarlab_version": __version__, "preset": cfg.preset, "model": cfg.model,
        "seed": cfg.seed,
    }, logits if temperature is None else logits / temperature


def settings_temperature_source(cfg: Config) -> str:
    """Where the settings' temperature comes from: none, the preset's, or --temperature."""
    if cfg.temperature is None:
        return "none"
    return "preset" if cfg.temperature == PRESETS[cfg.preset].temperature else "setting"


def finish(trainer: Trainer, folder: RunFolder, metrics: dict[str, Any], logits: torch.Tensor,
           board: TensorBoard | None) -> None:
    """Log the test result and draw the report; a failing report loses nothing."""
    log = folder.log
    split = metrics["evaluated_on"]
    best_val = metrics["best_val_acc"]
    best_epoch = metrics["best_epoch"]
    chosen = (f"epoch {best_epoch}, val {best_val:.2f}%" if best_val is not None
              else f"last epoch {best_epoch}, no validation split")
    what = "test accuracy" if split == "test" else "validation accuracy (no test set)"
    log(f"{what} {metrics[split + '_top1']:.2f}% (top-5 {metrics[split + '_top5']:.2f}%) of the "
        f"chosen weights ({chosen}); trained in {format_duration(metrics['train_seconds'])}")
    log(format_calibration(metrics))
    log(format_per_class(metrics))
    if board is not None:
        log_final_to_tensorboard(trainer, board, metrics, logits)
    if trainer.cfg.report:
        try:
            draw_report(trainer, folder, metrics, logits)
        except Exception as e:  # the run itself is saved; the report can be redrawn later
            log(f"report not written ({type(e).__name__}: {e}); "
                f"retry with: cifarlab report {folder.path}")
    log(f"saved in {folder.path}: {', '.join(folder.saved_files())}")


def draw_report(trainer: Trainer, folder: RunFolder, metrics: dict[str, Any],
                logits: torch.Tensor) -> None:
    """The report, from what the run holds: its settings, metrics, rows and chosen weights."""
    from cifarlab.reporting.report import RunResults, write_report  # matplotlib: when drawing

    cfg = trainer.cfg
    data = trainer.data
    split = metrics["evaluated_on"]
    model = Classifier(unwrap(trainer.nets.eval_model), cfg.mean, cfg.std, data.classes,
                       config=cfg, image_size=cfg.image_size)  # float32: for the heatmaps
    results = RunResults(folder.path.name, cfg, metrics, trainer.state.history, model.eval())
    write_report(results, folder.path, *data.split(split), logits, data.classes, split)


def log_final_to_tensorboard(trainer: Trainer, board: TensorBoard, metrics: dict[str, Any],
                             logits: torch.Tensor) -> None:
    """The evaluation with the settings, the confusion matrix and the prediction grid."""
    from cifarlab.reporting import plots

    split = metrics["evaluated_on"]
    classes = trainer.data.classes
    images, labels = trainer.data.split(split)
    preds = logits.argmax(1).cpu().numpy()
    figures = {"confusion": plots.plot_confusion(metrics["confusion"], classes, split),
               "predictions": plots.plot_predictions(images[:64].cpu().numpy(),
                                                     labels[:64].cpu().numpy(), preds[:64],
                                                     classes, split=split)}
    board.final(trainer.cfg.to_dict(), metrics, figures, trainer.steps_done(trainer.state.epoch))
