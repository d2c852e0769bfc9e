"""A run folder's lock file: which process writes the folder, so that no two do."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


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

    query = 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION
    still_active = 259
    access_denied = 5
    handle = kernel32.OpenProcess(query, False, pid)
    if not handle:
        return kernel32.GetLastError() == access_denied
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and (
            code.value == still_active)
    finally:
        kernel32.CloseHandle(handle)


def _try_lock(fd: int) -> bool:
    """Take the kernel's exclusive lock on the open file `fd` without waiting: held until the
    process closes it or dies (SIGKILL included), so a dead writer never blocks its folder."""
    if fcntl is None:  # Windows: no flock; the lock file's pid decides
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """The lock file holds "pid host" of the process writing the folder, and that process holds
    the kernel's lock on it (flock). A second process is refused; a lock file whose process
    died (killed, or a full disk at start that left it empty) is taken over. Taking it over is
    atomic: of processes racing for the same dead run's folder, one wins."""

    def __init__(self, path: Path):
        self.path = path
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        for _ in range(10):  # retried only when another process replaced the file meanwhile
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise CifarlabError(f"cannot write to run folder {self.path.parent}: "
                                    f"{e.strerror}") from None
            if not _try_lock(fd) or self._foreign_owner():
                os.close(fd)
                pid, host = self.owner() or (0, "?")
                raise CifarlabError(
                    f"{self.path.parent} is in use by process {pid} on {host}; wait for it or "
                    f"stop it (if no run uses the folder, delete {self.path})")
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # its owner released it between our open and lock
                same = False
            if not same:
                os.close(fd)
                continue
            self._write_owner(fd)
            return self
        raise CifarlabError(f"could not take the lock {self.path}; delete it and retry")

    def _foreign_owner(self) -> bool:
        """A live writer the kernel's lock cannot see: another host's, or (without flock) a
        live process of this host."""
        pid, host = self.owner() or (0, "")
        if host and host != socket.gethostname():
            return True
        return fcntl is None and bool(pid) and pid != os.getpid() and process_alive(pid)

    def _write_owner(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError as e:
            self.path.unlink(missing_ok=True)
            os.close(fd)
            raise CifarlabError(f"cannot write to run folder {self.path.parent}: "
                                f"{e.strerror}; free some space and retry") from None
        self._fd = fd
        self.held = True

    def owner(self) -> tuple[int, str] | None:
        """(pid, host) written in the lock file; None without a readable one."""
        if not self.path.is_file():  # missing, or not a file (a pipe would block the read)
            return None
        try:
            words = self.path.read_text().split()
        except (OSError, UnicodeDecodeError):
            return None
        return (int(words[0]), words[1]) if len(words) == 2 and words[0].isdigit() else None

    def live_owner(self) -> str | None:
        """Who holds the folder now ("process PID", or "on HOST" for another machine), or
        None when nobody does (no lock file, or nobody holds its kernel lock)."""
        pid, host = self.owner() or (0, "")
        if host and host != socket.gethostname():
            return f"on {host}"
        if self.held:
            return f"process {os.getpid()}"
        if fcntl is None:
            return f"process {pid}" if pid and process_alive(pid) else None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            free = _try_lock(fd)
        finally:
            os.close(fd)  # and with it the lock just taken
        return None if free else f"process {pid}"

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter then finds no file
            os.close(self._fd)
            self._fd = None
            self.held = False
