"""One exception family for every user-facing error, so the CLI can print it cleanly."""


class EdgePruneError(ValueError):
    """A problem with user input; the message names the input and the fix."""


class CompileError(EdgePruneError):
    """A RASP program the compiler cannot turn into weights."""


class ModelFileError(EdgePruneError):
    """A model or reference directory that is missing files or disagrees with itself."""


class InputError(EdgePruneError):
    """An input sequence the model cannot run (unknown token, too long, ...)."""
