"""`cifarlab train --time 2m`: the best model that fits a wall-clock budget on this machine, its
test and report included.

After the data is loaded, a probe (`training.probe`: a few of each candidate's own training
steps and an evaluation batch, seconds in all) measures this machine, and each candidate's
time is predicted from it: its steps at each image size, its validation and test passes, and
what follows (report, exit). Without a named preset or model, the candidates are the speed
presets at the lengths their development runs measured (`runs.budgets`: validation accuracy,
never the test set), and the plan is the most accurate one predicted to fit; with one, it is
that preset's recipe for as many epochs as fit. Either way the schedule is the recipe's own
over the chosen length: the speed presets decay the learning rate linearly to zero at the
last step, the budget-aware schedule of Li, Yumer and Ramanan (ICLR 2020), whose budget is
steps; ours is wall time, hence the prediction.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from cifarlab.data import DataSplits, default_data_dir, load_data
from cifarlab.errors import CifarlabError, DataError
from cifarlab.runs import Config, make_config
from cifarlab.runs.budgets import CANDIDATES, PLACEMENT
from cifarlab.runs.logs import format_duration
from cifarlab.runs.run_data import load_data_for
from cifarlab.runtime import (
    amp_dtype,
    device_name,
    precision_name,
    prepare_process,
    resolve_device,
)
from cifarlab.training.flops import flops_per_image
from cifarlab.training.probe import Speed, measure_speed
from cifarlab.training.trainer import steps_per_epoch

UNITS = {"s": 1, "m": 60, "h": 3600}
MARGIN = 0.95  # a plan uses this share of what is left: the machine's noise takes the rest
# What follows the test: the report's pictures and page (2-4 s on 2 CPU cores), the log and
# the process's exit; without a report, the exit only.
REPORT_SECONDS = 5.0
EXIT_SECONDS = 1.0
MAX_EPOCHS = 200  # the longest run a named preset is planned for
# A network never computes more than this many times faster per FLOP than the smallest
# candidate probed: a bound that lets the probe skip what cannot fit without timing it.
EFFICIENCY_BOUND = 2.0


def parse_duration(text: str | float) -> float:
    """Seconds of `90`, `90s`, `2m`, `1.5h` or `1h30m`."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"\s*((?:\d+(?:\.\d*)?\s*[smh]\s*)+|\d+(?:\.\d*)?)\s*", text.lower())
        if not parts:
            raise CifarlabError(f"--time takes a duration such as 90s, 2m, 1.5h or 1h30m, not "
                                f"{text!r}")
        found = re.findall(r"(\d+(?:\.\d*)?)\s*([smh]?)", parts.group(1))
        seconds = sum(float(n) * UNITS[unit or "s"] for n, unit in found)
    if not math.isfinite(seconds) or seconds <= 0:
        raise CifarlabError(f"--time must be a positive duration, not {text!r}")
    return seconds


@dataclass(frozen=True)
class Plan:
    """The chosen settings and what was predicted for them: seconds already gone (`spent`:
    the start, the data, the probe) and to come, by phase."""

    cfg: Config
    budget: float
    spent: float
    predicted: dict[str, float]
    expected: float | None  # validation accuracy of its development runs, if measured
    probe_seconds: float
    machine: str
    next_up: tuple[Config, float] | None = None  # the better run that did not fit, its end
    lines: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.spent + sum(self.predicted.values())

    def record(self) -> dict[str, Any]:
        """metrics.json's `budget`: what was planned."""
        return {"budget_seconds": self.budget, "preset": self.cfg.preset,
                "epochs": self.cfg.epochs, "predicted_seconds": self.total,
                "predicted": {"before": self.spent, **self.predicted},
                "probe_seconds": self.probe_seconds, "expected_val_top1": self.expected}


@dataclass(frozen=True)
class Images:
    """How many images a run trains on, validates on every epoch and tests on at the end."""

    train: int
    val: int
    test: int

    @classmethod
    def of(cls, data: DataSplits) -> Images:
        tested, _ = data.split(data.evaluation_split)
        return cls(len(data.train_images), len(data.val_images), len(tested))


def predict(cfg: Config, speed: Speed, images: Images) -> dict[str, float]:
    """Seconds of a run of `cfg` on `images` at the measured `speed`, by phase."""
    steps = steps_per_epoch(images.train, cfg.batch_size)
    train = sum(steps * cfg.batch_size * speed.train[cfg.epoch_size(e)]
                for e in range(1, cfg.epochs + 1))
    return {"train": train, "validate": cfg.epochs * images.val * speed.validate,
            "test": images.test * speed.test,
            "after": REPORT_SECONDS if cfg.report else EXIT_SECONDS}


def candidates(preset: str | None, config_file: str | None, overrides: dict[str, Any]
               ) -> dict[str, list[int]]:
    """{preset: the lengths to try, in epochs, shortest first}: with a named preset, model or
    config file, that recipe at every length; else the measured candidates, smallest network
    first."""
    if "epochs" in overrides or "low_res_epochs" in overrides:
        raise CifarlabError("--time chooses the number of epochs; drop --epochs and "
                            "--low-res-epochs")
    if preset or config_file or "model" in overrides:
        base = make_config(preset, config_file, **overrides)
        return {base.preset: list(range(1, MAX_EPOCHS + 1))}
    lengths: dict[str, list[int]] = {}
    for name, epochs in CANDIDATES:
        lengths.setdefault(name, []).append(epochs)
    return lengths


def plan_run(budget: float, started: float, *, preset: str | None = None,
             config_file: str | None = None, quiet: bool = False, **overrides: Any
             ) -> tuple[Plan, DataSplits]:
    """Load the data, measure this machine and choose: the plan for a run that ends within
    `budget` seconds of `started` (a time.time()), and the data it trains on. Expected
    accuracy only where measured and the recipe is the preset's own."""
    options = candidates(preset, config_file, overrides)
    own = set(overrides) <= PLACEMENT and config_file is None

    def settings(name: str, epochs: int) -> Config:
        return make_config(name, config_file, epochs=epochs, **overrides)

    first = settings(*next((name, lengths[0]) for name, lengths in options.items()))
    device = resolve_device(first.device)
    prepare_process(device, first.num_threads, first.seed)
    data = load_data_for(first)
    images = Images.of(data)
    classes = len(data.classes)
    machine = f"{device_name(device)}, {device.type}"

    def expected(cfg: Config) -> float | None:
        return CANDIDATES.get((cfg.preset, cfg.epochs)) if own else None

    fitting, beyond, probed = _survey(options, settings, budget, started, images, classes,
                                      device)
    spent = time.time() - started
    if not fitting:
        raise _too_small(budget, spent, beyond[0] if beyond else None, machine)
    # One network: the longest that fits; else the most accurate (the longest of equals).
    best = ((lambda f: f[0].epochs) if len(options) == 1 else
            (lambda f: (expected(f[0]) or 0.0, f[0].epochs)))
    cfg, seconds = max(fitting, key=best)
    better = [b for b in beyond if len(options) == 1 or (expected(b[0]) or 0.0)
              > (expected(cfg) or 0.0)]
    plan = Plan(cfg, budget, spent, seconds, expected(cfg), probed, machine,
                next_up=min(better, key=lambda b: b[1], default=None))
    plan.lines.extend(describe(plan, data, precision_name(amp_dtype(cfg.amp, device))))
    if not quiet:
        print("\n".join(plan.lines), flush=True)
    return plan, data


def _survey(options: dict[str, list[int]], settings: Callable[[str, int], Config],
            budget: float, started: float, images: Images, classes: int,
            device: torch.device
            ) -> tuple[list[tuple[Config, dict[str, float]]], list[tuple[Config, float]], float]:
    """Probe each network that could fit (smallest first) and predict its lengths: those that
    fit, with their predicted seconds by phase; each network's first that does not, with its
    predicted end (a network skipped unprobed has none); and the seconds spent probing."""
    fitting = []
    beyond = []
    probed = 0.0
    rate = None  # the smallest network's FLOP/s
    for name, lengths in options.items():
        shortest = settings(name, lengths[0])
        left = (budget - (time.time() - started)) * MARGIN
        if rate is not None and _cannot_fit(shortest, classes, images, rate, left):
            break  # nor can any larger network
        speed = measure_speed(settings(name, lengths[-1]), classes, device)  # every size
        probed += speed.probe_seconds
        rate = rate or _flop_rate(shortest, classes, speed)
        left = (budget - (time.time() - started)) * MARGIN
        for epochs in lengths:
            cfg = settings(name, epochs)
            seconds = predict(cfg, speed, images)
            if sum(seconds.values()) > left:  # nor will a longer run
                beyond.append((cfg, time.time() - started + sum(seconds.values())))
                break
            fitting.append((cfg, seconds))
    return fitting, beyond, probed


def _flop_rate(cfg: Config, num_classes: int, speed: Speed) -> float:
    size = cfg.image_size
    return flops_per_image(cfg, num_classes, size) / speed.train[size]


def _cannot_fit(cfg: Config, num_classes: int, images: Images, rate: float,
                left: float) -> bool:
    """Whether the run of `cfg` (a network's shortest), at EFFICIENCY_BOUND times the
    smallest network's FLOP rate, would take longer than `left` seconds (its training alone)."""
    steps = steps_per_epoch(images.train, cfg.batch_size)
    flops = sum(steps * cfg.batch_size * flops_per_image(cfg, num_classes, cfg.epoch_size(e))
                for e in range(1, cfg.epochs + 1))
    return flops / (rate * EFFICIENCY_BOUND) > left


def _too_small(budget: float, spent: float, smallest: tuple[Config, float] | None,
               machine: str) -> CifarlabError:
    """The one line for a budget that nothing fits: the least this machine needs."""
    if smallest is None:
        return CifarlabError(f"a budget of {format_duration(budget)} leaves no time to train "
                             f"after {format_duration(spent)} of start-up on this machine")
    cfg, end = smallest
    need = math.ceil(end / MARGIN / 5) * 5
    return CifarlabError(f"a budget of {format_duration(budget)} is below the smallest "
                         f"sensible run on this machine ({machine}): {_run(cfg)} would end "
                         f"at about {format_duration(end)}, start-up included; give --time "
                         f"{format_duration(need)} or more")


def _run(cfg: Config) -> str:
    return f"{cfg.preset} for {cfg.epochs} epoch{'s' * (cfg.epochs > 1)}"


def network(cfg: Config) -> str:
    """The model and its widths, where it has them: "fastnet 32/64/128"."""
    widths = cfg.model_args.get("widths")
    return cfg.model + (" " + "/".join(map(str, widths)) if widths else "")


def describe(plan: Plan, data: DataSplits, precision: str) -> list[str]:
    """The plan's first lines: the budget and the machine, then the choice and its
    prediction."""
    cfg = plan.cfg
    p = plan.predicted
    low = [cfg.epoch_size(e) for e in range(1, cfg.epochs + 1) if cfg.epoch_size(e) !=
           cfg.image_size]
    sizes = f" (the first {len(low)} at {low[0]} px)" if low else ""
    expected = ("; its development runs reached "
                f"{plan.expected:.2f}% on CIFAR-10's validation split"
                if plan.expected is not None
                else "; no development runs at this length: no accuracy to expect")
    if plan.next_up:
        expected += (f" ({_run(plan.next_up[0])} would end at "
                     f"{format_duration(plan.next_up[1])})")
    return [f"time budget {format_duration(plan.budget)} on {plan.machine}, {precision}: "
            f"{format_duration(plan.spent)} gone (start, {len(data.train_images)} training "
            f"images loaded, {format_duration(plan.probe_seconds)} measuring this machine)",
            f"plan: preset {cfg.preset} ({network(cfg)}) for {cfg.epochs} "
            f"epoch{'s' * (cfg.epochs > 1)}{sizes}, predicted to end at "
            f"{format_duration(plan.total)} (training {format_duration(p['train'])}, "
            f"validation {format_duration(p['validate'])}, test "
            f"{format_duration(p['test'])}){expected}"]


def outcome(plan: Plan, wall: float, train_seconds: float) -> str:
    """One line: within the budget, or by how much it overran and where the time went."""
    share = 100 * wall / plan.budget
    if wall <= plan.budget:
        return (f"time budget {format_duration(plan.budget)}: done in "
                f"{format_duration(wall)} ({share:.0f}% of it)")
    slower = 100 * (train_seconds / max(plan.predicted["train"], 1e-9) - 1)
    why = (f"training took {format_duration(train_seconds)} against "
           f"{format_duration(plan.predicted['train'])} predicted: the steps ran {slower:.0f}% "
           "slower than the probe measured (a busy machine?)" if slower > 5 else
           "training ran as predicted; what came after took longer")
    return (f"time budget {format_duration(plan.budget)}: overran by "
            f"{format_duration(wall - plan.budget)} ({share - 100:.0f}%), done in "
            f"{format_duration(wall)}; {why}")


def estimate(names: list[str], data_dir: str | None, started: float) -> Iterator[str]:
    """Each preset's predicted wall time on this machine, from the same probe as a budget's,
    as lines: on CIFAR-10 in `data_dir` (or the default folder) when it is there, its start-up
    and loading included; else on CIFAR-10's sizes, loading left out."""
    device = resolve_device("auto")
    prepare_process(device, None, 0)
    try:
        data = load_data("cifar10", data_dir or default_data_dir(), download=False,
                         val_size=0)
        train = len(data.train_images)
        test = len(data.test_images)
        where = f"CIFAR-10 ({train:,} training images; start-up and loading included)"
    except DataError:
        train = 50_000
        test = 10_000
        where = "CIFAR-10's sizes (no copy found to load: loading not included)"
    before = time.time() - started
    yield f"Predicted wall time of each preset on {device_name(device)} ({device.type}), {where}:"
    for name in names:
        cfg = make_config(name)
        speed = measure_speed(cfg, 10, device, repeats=1)
        val = cfg.val_size if cfg.val_size is not None else 5_000
        seconds = predict(cfg, speed, Images(train - val, val, test))
        total = format_duration(before + sum(seconds.values()))
        early = ", or fewer: it stops early" if cfg.patience else ""
        yield (f"  {name:<10} {('up to ' if early else '') + total:<13} "
               f"{precision_name(amp_dtype(cfg.amp, device))}, {cfg.epochs} epochs{early} "
               f"(training {format_duration(seconds['train'])}, test "
               f"{format_duration(seconds['test'])}; probed in "
               f"{format_duration(speed.probe_seconds)})")
