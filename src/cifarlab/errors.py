"""One base class for the errors a user can fix; the CLI prints their message on one line."""

import errno


class CifarlabError(Exception):
    """An error with a message that says what went wrong and what to do about it."""


class DataError(CifarlabError):
    """The dataset is missing, corrupt, or cannot be downloaded."""


class ModelError(CifarlabError, ValueError):
    """A model that cannot be built with the arguments given."""


class ConfigError(CifarlabError, ValueError):
    """A configuration value, file or preset that cannot be used; the message says what to fix."""


class CheckpointError(CifarlabError):
    """A checkpoint or run folder that cannot be loaded."""


class TrainingError(CifarlabError):
    """Training cannot go on (e.g. the loss diverged)."""


class Pruned(CifarlabError):
    """A search stopped this trial's training: its results so far say it will not win."""


class TrainingInterrupted(CifarlabError):
    """Ctrl-C or SIGTERM stopped training after saving; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training's own handling (loading, the final test, the report, predict):
    raised where the process is, so that it leaves as Ctrl-C does, its run folder's state
    written and its lock freed."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of another library's."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


_WHAT_TO_DO = {errno.ENAMETOOLONG: "give a shorter path",
               errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
               errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
               errno.ENOTDIR: "a file stands where a folder is expected",
               errno.EISDIR: "a folder stands where a file is expected",
               errno.EROFS: "the file system is read-only", errno.ENOENT: "check the path"}


def os_error_line(e: OSError) -> str:
    """What the operating system refused, in one line: the path, its reason, what to do."""
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    reason = e.strerror or first_line(e)
    advice = _WHAT_TO_DO.get(e.errno)
    return (f"{paths + ': ' if paths else ''}{reason}" + (f" ({advice})" if advice else ""))
