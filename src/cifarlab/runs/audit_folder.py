"""An audit's folder (`cifarlab audit`), and every file in it, owned by `AuditFolder`:

    fold-N/       one run folder per cross-validation fold (kept: a stopped audit reuses
                  the folds that finished)
    audit.json    every finding, the data check and how the audit ran
    audit.html    the page: the findings as pictures

No other module names these files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.files import publish_text
from cifarlab.runs.folder import RunFolder

FINDINGS = "audit.json"
PAGE = "audit.html"
FOLD = "fold-"


class AuditFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def claim(self) -> None:
        """Create the folder; refuse one that holds anything but an earlier audit's files."""
        if self.path.exists() and not self.path.is_dir():
            raise CifarlabError(f"--out {self.path} is a file; give a folder")
        if self.path.is_dir():
            foreign = [p.name for p in self.path.iterdir()
                       if p.name not in (FINDINGS, PAGE) and not p.name.startswith(FOLD)]
            if foreign:
                raise CifarlabError(f"--out {self.path} holds other files ({foreign[0]}, ...); "
                                    "give an empty folder or an earlier audit's")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CifarlabError(f"cannot create {self.path}: {e.strerror}") from None

    def fold_dir(self, number: int) -> Path:
        return self.path / f"{FOLD}{number}"

    def finished_fold(self, number: int, train_sha256: str) -> bool:
        """Whether fold `number` finished training on these images; an unfinished one (a
        stopped audit) or one of other images is cleared for a new start."""
        path = self.fold_dir(number)
        if not path.exists():
            return False
        folder = RunFolder(path)
        record = folder.data_record() if folder.finished else None
        if record and (record.get("train") or {}).get("sha256") == train_sha256:
            return True
        if not RunFolder.holds_run(path):
            raise CifarlabError(f"{path} is not a fold of an audit; remove it or give another "
                                "--out")
        shutil.rmtree(path)
        return False

    @property
    def findings_path(self) -> Path:
        return self.path / FINDINGS

    @property
    def page_path(self) -> Path:
        return self.path / PAGE

    def write_findings(self, record: dict[str, Any]) -> Path:
        publish_text(self.findings_path, json.dumps(record, indent=1) + "\n")
        return self.findings_path
