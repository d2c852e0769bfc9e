"""Stage 3, runs: what a run is. Its settings (`Config`, made from presets, config files and
options by `make_config`) and its folder (`RunFolder`: every file a run writes, and the one way
to read each back: settings, metrics, per-epoch rows, state, checkpoints)."""

from cifarlab.runs.checkpoint import Checkpoint, read_checkpoint
from cifarlab.runs.claims import new_run_dir
from cifarlab.runs.config import Config
from cifarlab.runs.folder import RunFolder, checkpoint_file, open_checkpoint
from cifarlab.runs.presets import DEFAULT_PRESET, PRESETS, Preset
from cifarlab.runs.resolve import make_config
from cifarlab.runs.study import StudyFolder
from cifarlab.runs.values import option_name

__all__ = ["DEFAULT_PRESET", "PRESETS", "Checkpoint", "Config", "Preset", "RunFolder",
           "StudyFolder", "checkpoint_file", "make_config", "new_run_dir", "open_checkpoint",
           "option_name", "read_checkpoint"]
