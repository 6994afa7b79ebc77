"""Trainer hooks and guards the tests share."""

import contextlib
import signal

from vise_plugin.engine.hooks.base import HookBase


class StopAfter(HookBase):
    """Stops the run (as a kill would) after ``iteration``."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self, trainer):
        if trainer.iteration == self.iteration:
            raise KeyboardInterrupt


@contextlib.contextmanager
def finishes_within(seconds, what):
    """Raises ``TimeoutError(what)`` in the block after ``seconds`` (a trainer that would loop for ever)."""

    def too_long(*args):
        raise TimeoutError(what)

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
