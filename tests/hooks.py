"""Trainer hooks and guards the tests share."""

import contextlib
import signal

from vise_plugin.engine.hooks import BadImageHook, HookBase


class StopAfter(HookBase):
    """Stops the run (as a kill would) after ``iteration``."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self, trainer):
        if trainer.iteration == self.iteration:
            raise KeyboardInterrupt


def bad_images(trainer):
    """The :class:`BadImageBudget` a trainer's :class:`BadImageHook` counts in (its ``skipped`` and ``seen``)."""
    return next(hook.budget for hook in trainer.hooks if isinstance(hook, BadImageHook))


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
