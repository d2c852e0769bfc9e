"""The data a run's settings name, loaded: the one way from a Config to its `DataSplits`
(training, search, budget, evaluation and the demo all read it so)."""

from __future__ import annotations

import os

from cifarlab.data import DataSplits, load_data
from cifarlab.data.exclusion import read_exclusion
from cifarlab.runs.config import Config


def load_data_for(cfg: Config, data_dir: str | os.PathLike | None = None, *,
                  download: bool | None = None) -> DataSplits:
    """The dataset, validation split and left-out images of `cfg`; `data_dir` and `download`
    override the run's own (evaluating a run on another copy of its data)."""
    folder = cfg.data_folder() if data_dir is None else data_dir
    exclude = read_exclusion(cfg.exclude, folder) if cfg.exclude else None
    return load_data(cfg.dataset, folder, download=cfg.download if download is None else download,
                     val_size=cfg.val_size, split_seed=cfg.split_seed,
                     image_size=cfg.image_size, exclude=exclude)
