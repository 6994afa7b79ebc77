"""Errors that reach the user as one line (file, line or key included), not a traceback."""


class UserError(Exception):
    """A problem in the user's config or input that the user can fix; printed as one line."""


class ConfigError(UserError):
    """A config key is unknown, mistyped or points at something missing."""


class InputError(UserError):
    """An input file is missing, empty or malformed."""


class NonFiniteLossError(UserError):
    """Training stopped because the loss became NaN or infinite; the message names the iteration."""


def error_summary(error: BaseException) -> str:
    """``Type: first line of the message``: an exception as one line of an error message or log."""
    message = str(error)
    return f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"


def error_text(error: BaseException) -> str:
    """An error's own words: an ``OSError``'s text (``No such file or directory``, not its errno), else
    its first argument without the stream WebDataset appends to it (`` @ <stream>``)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error.args[0] if error.args else type(error).__name__).split(" @ ")[0]
