"""Fetch a file with a progress bar and an MD5 check, and unpack a tarball without trusting it."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import sys
import tarfile
import time
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


class IncompleteDownload(OSError):
    """The connection closed before Content-Length bytes arrived."""


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0,
             attempts: int = 4, wait: float = 1.0) -> Path:
    """Download `url` to `dest` via `dest.part`: `dest` only appears once complete and verified.

    A broken transfer is retried (`attempts` in all, waiting `wait`, then twice as long each
    time), continuing from the bytes already in `dest.part` when the server honours HTTP Range
    requests and starting over when it does not. After the last failure the partial file is
    kept, so the next run continues it; a wrong MD5 deletes it.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    print(f"downloading {url} -> {dest}", file=sys.stderr)
    for attempt in range(1, attempts + 1):
        try:
            _fetch(url, part, timeout)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416:  # our Range lies beyond the file: start again from zero
                part.unlink(missing_ok=True)
            elif 400 <= e.code < 500 and e.code not in (408, 429):
                part.unlink(missing_ok=True)
                raise DataError(f"could not download {url}: HTTP {e.code} {e.reason}. Check the "
                                f"address, or put the extracted dataset under {dest.parent} "
                                "yourself") from None
            failure: Exception = e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            failure = e
        if attempt == attempts:
            reason = getattr(failure, "reason", None) or failure
            raise DataError(f"could not download {url} ({attempts} attempts): {reason}. Check "
                            f"the network and run again (the partial download is kept and "
                            f"continued), or put the extracted dataset under {dest.parent} "
                            "yourself") from None
        delay = wait * 2 ** (attempt - 1)
        print(f"download broken ({failure}); retrying in {delay:g} s "
              f"(attempt {attempt + 1} of {attempts})", file=sys.stderr)
        time.sleep(delay)
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise DataError(f"{url} downloaded with MD5 {got}, expected {md5}: the file is "
                            "corrupt or not the official one; run again to retry")
    part.replace(dest)
    return dest


def _fetch(url: str, part: Path, timeout: float) -> None:
    """One attempt: append to `part` from where it ends (Range), or rewrite it."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status != 206:  # a full response: the server ignored Range, or none sent
            have = 0
        length = int(response.headers.get("Content-Length") or -1)
        with open(part, "ab" if have else "wb") as out, tqdm(
                total=have + length if length >= 0 else None, initial=have, unit="B",
                unit_scale=True, unit_divisor=1024, desc=part.name.removesuffix(".part"),
                disable=not sys.stderr.isatty()) as bar:
            got = 0
            while block := response.read(1 << 20):
                out.write(block)
                got += len(block)
                bar.update(len(block))
    if 0 <= length != got:
        raise IncompleteDownload(f"connection closed after {got} of {length} bytes")


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
