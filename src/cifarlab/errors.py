"""One base class for the errors a user can fix; the CLI prints their message on one line."""


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


class TrainingInterrupted(CifarlabError):
    """Ctrl-C or SIGTERM stopped training after saving; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of another library's."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
