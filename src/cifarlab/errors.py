"""One base class for the errors a user can fix; the CLI prints their message on one line."""


class CifarlabError(Exception):
    """An error with a message that says what went wrong and what to do about it."""


class DataError(CifarlabError):
    """The dataset is missing, corrupt, or cannot be downloaded."""


class ModelError(CifarlabError, ValueError):
    """A model that cannot be built with the arguments given."""


class CheckpointError(CifarlabError):
    """A checkpoint or run folder that cannot be loaded."""
