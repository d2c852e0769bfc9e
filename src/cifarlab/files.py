"""Writing files safely: a file another program (or a resumed run) may read is published whole
or not at all — written under a temporary name beside it, then renamed over it — and a full disk
or an unwritable folder is one clear error that names the file. Reading a JSON object file back:
damage is one clear error too."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError, first_line


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or first_line(e)


@contextlib.contextmanager
def publishing(path: str | os.PathLike, error: type[CifarlabError] = CifarlabError
               ) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename. On a
    failure the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    # One temporary name per process: processes publishing the same file (torchrun ranks
    # filling one cache) each write their own, and the last rename wins, whole.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing written"
        raise error(f"cannot write {path}: {_reason(e)}; {kept}. Free some space or fix the "
                    "folder's permissions, then try again") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole text file atomically."""
    with publishing(path) as tmp:  # names that are not UTF-8 (surrogates) written escaped
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append to a log-like file; a full disk or an unwritable folder is one clear error."""
    try:
        with open(path, "a", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
    except OSError as e:
        raise CifarlabError(f"cannot write {path}: {_reason(e)}; free some space or fix the "
                            "folder's permissions, then resume the run") from None


def read_json_object(path: str | os.PathLike, error: type[CifarlabError] = CifarlabError
                     ) -> dict[str, Any] | None:
    """A JSON object file; None when absent; `error` naming the file when it is damaged, not
    a JSON object, or not a regular file (a pipe would block the read for good)."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise error(f"{path} is damaged (not a regular file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise error(f"{path} is damaged ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise error(f"{path} is damaged (not a JSON object)")
    return data
