"""Fetch a file with a progress bar and an MD5 check, and unpack a tarball without trusting it."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from cifarlab.errors import DataError


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` via `dest.part`: `dest` only appears once complete and verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    print(f"downloading {url} -> {dest}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not sys.stderr.isatty()) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise DataError(f"could not download {url}: {reason}. Check the network, or put the "
                        f"extracted dataset under {dest.parent} yourself") from None
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise DataError(f"{url} downloaded with MD5 {got}, expected {md5}: the file is "
                            "corrupt or not the official one; run again to retry")
    part.replace(dest)
    return dest


def check_members(tar: tarfile.TarFile, target: Path) -> None:
    """Refuse any member that is not a plain file or folder, or that would land outside `target`."""
    root = target.resolve()
    for m in tar.getmembers():
        if not (m.isfile() or m.isdir()):
            raise DataError(f"refusing to extract {m.name!r}: archive members must be plain "
                            "files or folders (links and devices are not allowed)")
        dest = (root / m.name).resolve()
        if dest != root and root not in dest.parents:
            raise DataError(f"refusing to extract {m.name!r}: it would land outside {root}")


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a .tar.gz into `target`, all or nothing: it is unpacked beside it, then moved."""
    staging = target.with_name(target.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            check_members(tar, staging)
            staging.mkdir(parents=True)
            # The "data" filter repeats these checks where Python has it (3.11.4+, 3.12).
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, **kwargs)
        for item in staging.iterdir():
            final = target / item.name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            target.mkdir(parents=True, exist_ok=True)
            item.replace(final)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot extract {archive}: {e}. Delete it and run again to download "
                        "a fresh copy") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
