"""A run folder's lock file: which process writes the folder, so that no two do."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host; never disturbs it. (On Windows os.kill(pid, 0)
    would terminate it: there the process is opened and its exit code read instead.)"""
    if os.name == "nt":
        import ctypes

        return windows_process_alive(pid, ctypes.windll.kernel32)  # type: ignore[attr-defined]
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def windows_process_alive(pid: int, kernel32: Any) -> bool:
    """OpenProcess with the right to query only, then GetExitCodeProcess: STILL_ACTIVE (259)
    while it runs. Access denied means it exists."""
    import ctypes

    query, still_active, access_denied = 0x1000, 259, 5  # PROCESS_QUERY_LIMITED_INFORMATION
    handle = kernel32.OpenProcess(query, False, pid)
    if not handle:
        return kernel32.GetLastError() == access_denied
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and (
            code.value == still_active)
    finally:
        kernel32.CloseHandle(handle)


class RunLock:
    """The lock file holds "pid host" of the process writing the folder. A second process is
    refused; a lock left by a process that died on this host is taken over."""

    def __init__(self, path: Path):
        self.path = path
        self.held = False

    def acquire(self) -> RunLock:
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self.owner() or (0, "?")
                if host == socket.gethostname() and pid and not process_alive(pid):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise CifarlabError(
                    f"{self.path.parent} is in use by process {pid} on {host}; wait for it or "
                    f"stop it (if no run uses the folder, delete {self.path})") from None
            except OSError as e:
                raise CifarlabError(f"cannot write to run folder {self.path.parent}: "
                                    f"{e.strerror}") from None
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self.held = True
            return self
        raise CifarlabError(f"could not take the lock {self.path}; delete it and retry")

    def owner(self) -> tuple[int, str] | None:
        """(pid, host) written in the lock file; None without a readable one."""
        try:
            words = self.path.read_text().split()
        except OSError:
            return None
        return (int(words[0]), words[1]) if len(words) == 2 and words[0].isdigit() else None

    def live_owner(self) -> str | None:
        """Who holds the folder now ("process PID", or "on HOST" for another machine), or
        None when nobody does (no lock, or its process on this host is gone)."""
        pid, host = self.owner() or (0, "")
        if host and host != socket.gethostname():
            return f"on {host}"
        return f"process {pid}" if pid and process_alive(pid) else None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

