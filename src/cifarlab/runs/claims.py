"""What cifarlab may write where: the folder a new run takes (a user's folder never; one of
cifarlab's own runs, marked as such, only when it has nothing to resume), and the files a
command writes beside runs and packages (never over theirs)."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

from cifarlab.errors import CifarlabError
from cifarlab.runs.folder import (
    CONFIG,
    FIRST_EPOCH,
    LOCK,
    MARK,
    RUN_FILES,
    RunFolder,
    is_litter,
)
from cifarlab.runs.package import PACKAGE_FILES, is_package


def new_run_dir(run_dir: str | os.PathLike | None, preset: str) -> Path:
    """The folder of a new run, created: `run_dir` (see `check_new_run_dir`), or a fresh
    runs/<timestamp>-<preset>."""
    if run_dir:
        path = Path(run_dir)
        check_new_run_dir(path)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{stamp}-{preset}"
        n = 1
        while path.exists():  # two runs started in the same second
            n += 1
            path = Path("runs") / f"{stamp}-{preset}-{n}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CifarlabError(f"cannot create run folder {path}: {e.strerror}") from None
    RunFolder(path).write_mark()
    return path


def check_new_run_dir(path: Path) -> None:
    """A new run may go into a missing or empty folder, or one that cifarlab marked as its run
    and whose run stopped before its first epoch ended (nothing to resume: its files are
    cleared, a live run's lock refuses it later). A finished or resumable run, a file, a
    folder without cifarlab's mark, or one holding anything else (a user's files) is refused:
    nothing of theirs is overwritten."""
    if not path.exists():
        return
    if not path.is_dir():
        raise CifarlabError(f"--run-dir {path} is a file; give a folder")
    folder = RunFolder(path)
    if folder.finished or folder.checkpoint_path("last").exists():
        raise CifarlabError(f"{path} already holds a run; choose another --run-dir, or "
                            + ("look at it with: cifarlab report " if folder.finished else
                               "continue it with: cifarlab train --resume ") + str(path))
    names = {p.name for p in path.iterdir()}
    # A live lock's owner (the lock says who) and a killed writer's temporary files are
    # cifarlab's whatever the folder; anything else needs the mark.
    written = {n for n in names if n != LOCK and not is_litter(n)}
    if written and not folder.marked():
        shown = ", ".join(sorted(written)[:3])
        raise CifarlabError(f"{path} is a folder that is not a cifarlab run (it holds {shown}"
                            f"{', ...' if len(written) > 3 else ''} and no {MARK}); choose a "
                            "new or empty --run-dir")
    others = sorted(written - FIRST_EPOCH - {MARK})
    try:
        folder.settings(missing_ok=True)
        cifarlab_config = True
    except CifarlabError:  # damaged, or settings of something else
        cifarlab_config = False
    if others or not cifarlab_config:
        shown = ", ".join((others or [CONFIG])[:3])
        raise CifarlabError(f"{path} holds files that its cifarlab run did not write ({shown}"
                            f"{', ...' if len(others) > 3 else ''}); choose a new or empty "
                            "--run-dir")
    if folder.lock.live_owner() is not None:
        return  # the lock refuses it, naming who holds it
    for name in names - {LOCK, MARK}:
        target = path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def check_output(path: str | os.PathLike, own: str | os.PathLike | None = None) -> None:
    """Before a command writes the file `path` (compare's page, an export): refused when it is
    a file of a run folder or of a model package, or one a run writes there, unless it is
    `own`, the command's own file (export's model.onnx in the run folder)."""
    p = Path(path)
    if own is not None and p.resolve() == Path(own).resolve():
        return
    where = p.parent
    if is_package(where) and (p.exists() or p.name in PACKAGE_FILES):
        kind = "model package"
    elif RunFolder.holds_run(where) and (p.exists() or p.name in RUN_FILES):
        kind = "run"
    else:
        return
    raise CifarlabError(f"{p} is a file of the {kind} in {where}; write the output elsewhere "
                        "(-o PATH)")
