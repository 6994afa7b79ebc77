"""``config.imports``: the user's modules, imported before anything is built in every process that builds."""

import importlib
import os
import sys
from typing import Iterable

from vise_plugin.errors import ConfigError


def import_modules(names: Iterable[str]) -> None:
    """Imports each module of ``config.imports`` (their registrations then exist in this process).

    The working directory is searched too, as ``python -m`` does. A module that fails to import is
    one :class:`ConfigError` naming it and the cause.
    """
    names = [str(n) for n in (names or [])]
    if names and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # ImportError, or an error raised while the module runs
            first = str(e).splitlines()[0] if str(e) else ""
            raise ConfigError(f"config.imports: cannot import {name} ({type(e).__name__}: {first})") from None
