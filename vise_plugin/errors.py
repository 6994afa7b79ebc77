"""Errors that reach the user as one line (file, line or key included), not a traceback."""


class UserError(Exception):
    """A problem in the user's config or input that the user can fix; printed as one line."""


class ConfigError(UserError):
    """A config key is unknown, mistyped or points at something missing."""


class InputError(UserError):
    """An input file is missing, empty or malformed."""


class NonFiniteLossError(UserError):
    """Training stopped because the loss became NaN or infinite; the message names the iteration."""
