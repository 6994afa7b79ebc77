"""``training_curves.png`` in the run folder, redrawn whenever a checkpoint is written and at the end."""

import logging
import os
import time

from vise_plugin.engine.hooks.base import HookBase
from vise_plugin.engine.training_curves import CURVES_PNG, plot_training_curves

logger = logging.getLogger(__name__)


class TrainingCurvesHook(HookBase):
    """Redraws ``<run_dir>/training_curves.png`` from ``stdout.json`` after each checkpoint save, on
    preemption and at the end of training (first rank only). Put it after the log and checkpoint
    hooks, so that the picture includes the step that was just logged and saved.

    Args:
        run_dir: the run folder.
        enabled: False on every rank but the first.
        min_interval_s: after a checkpoint, redraw only when this long has passed since the last
            picture (drawing takes about half a second; checkpoints every few iterations would pay it
            each time). The end of training and preemption always redraw.
    """

    def __init__(self, run_dir: str, enabled: bool = True, min_interval_s: float = 60.0):
        self.run_dir = run_dir
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self._drawn_at = -1
        self._drawn_time = -float("inf")

    def _draw(self, trainer, always: bool = True) -> None:
        if not self.enabled or self._drawn_at == trainer.iteration:
            return
        if not always and time.monotonic() - self._drawn_time < self.min_interval_s:
            return
        try:
            plot_training_curves([self.run_dir], os.path.join(self.run_dir, CURVES_PNG))
        except Exception as e:  # a picture must never stop a training run
            logger.warning("could not draw %s: %s", CURVES_PNG, e)
        self._drawn_at, self._drawn_time = trainer.iteration, time.monotonic()

    def after_step(self, trainer) -> None:
        saved = trainer.checkpointer.last_saved if trainer.checkpointer else None
        if saved is not None and saved[1] == trainer.iteration:
            self._draw(trainer, always=False)

    def on_preempt(self, trainer) -> None:
        self._draw(trainer)

    def after_train(self, trainer) -> None:
        self._draw(trainer)
