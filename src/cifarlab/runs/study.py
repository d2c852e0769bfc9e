"""A tuning study's folder (`cifarlab tune`), and every file in it, owned by `StudyFolder`:

    trial-NNNN/   one run folder per trial
    study.db      the study's storage, unless --storage names another
    tune.json     the search's summary and its one test-set evaluation

No other module names these files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cifarlab.files import publish_text
from cifarlab.runs.folder import RunFolder

SUMMARY = "tune.json"
STORAGE = "study.db"
TRIAL = "trial-"


class StudyFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @staticmethod
    def holds_study(path: str | os.PathLike) -> bool:
        p = Path(path)
        return (p / SUMMARY).exists() or (p / STORAGE).exists() or any(
            q.is_dir() and q.name.startswith(TRIAL) for q in p.iterdir())

    def trial_dir(self, number: int) -> Path:
        return self.path / f"{TRIAL}{number:04d}"

    def trials(self) -> list[Path]:
        """The trials' run folders, in order."""
        return [p for p in sorted(self.path.iterdir())
                if p.is_dir() and p.name.startswith(TRIAL) and RunFolder.holds_run(p)]

    def default_storage(self) -> str:
        return f"sqlite:///{self.path / STORAGE}"

    def write_summary(self, summary: dict[str, Any]) -> Path:
        publish_text(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")
        return self.path / SUMMARY

    def summary(self) -> dict[str, Any]:
        """tune.json's content; empty when absent or unreadable (the trials still show)."""
        try:
            data = json.loads((self.path / SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
