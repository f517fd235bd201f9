"""User-facing errors: one clear line, exit code 2, no traceback."""


class RobustError(ValueError):
    """Bad input or a missing resource. The message is one line that names the
    problem and what to do; the CLI prints it as ``error: <message>`` and exits 2."""


class DataNotFound(RobustError):
    """No copy of a dataset was found in any searched place and none could be downloaded."""


class CheckpointError(RobustError):
    """A checkpoint is missing, truncated, unsafe (would run code) or does not fit."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text (its type name if it has none), cut to
    ``limit`` characters with a visible mark."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
