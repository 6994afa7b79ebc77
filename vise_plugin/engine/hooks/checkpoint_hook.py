"""Writing checkpoints every N epochs, every N iterations, at the end, and when preempted."""

from typing import Optional

from vise_plugin.engine.hooks.base import HookBase


class PeriodicCheckpointHook(HookBase):
    """Saves ``trainer.state_dict()`` through ``trainer.checkpointer``.

    Args:
        period_epochs: ``model_phase<N>.torch`` after every ``period_epochs``-th epoch and the last.
        period_iterations: ``model_iteration<N>.torch`` every ``period_iterations`` iterations
            (None or 0: never), which bounds the work a SIGKILL can lose.
    """

    def __init__(self, period_epochs: int = 1, period_iterations: Optional[int] = None):
        self.period_epochs = max(int(period_epochs), 1)
        self.period_iterations = int(period_iterations or 0)
        self._saved_iteration = -1

    def _save(self, trainer, name: Optional[str]) -> None:
        if self._saved_iteration == trainer.iteration and name is None:
            return
        trainer.check_finite()  # never write damaged weights
        trainer.call_hooks("before_checkpoint")  # e.g. every rank's bad-image counts, agreed on and judged
        trainer.checkpointer.save(trainer.state_dict(), name)
        self._saved_iteration = trainer.iteration

    def after_step(self, trainer) -> None:
        end_of_epoch = trainer.batch_in_epoch == 0  # after_epoch saves this one
        if self.period_iterations and trainer.iteration % self.period_iterations == 0 and not end_of_epoch:
            self._save(trainer, f"model_iteration{trainer.iteration}.torch")

    def after_epoch(self, trainer) -> None:
        last = trainer.epoch == trainer.num_epochs
        if trainer.epoch % self.period_epochs == 0 or last:
            self._save(trainer, f"model_phase{trainer.epoch - 1}.torch")

    def on_preempt(self, trainer) -> None:
        self._save(trainer, None)
