"""Trainer hooks: every method does nothing unless a hook overrides it."""


class HookBase:
    """Called by :class:`vise_plugin.engine.trainer.Trainer` at these points, on every rank.

    ``before_train`` runs after a resume, so ``trainer.iteration`` is where training starts.
    ``on_preempt`` runs when the job was asked to stop early (SLURM's preemption signal), after
    the step in progress has finished.
    """

    def before_train(self, trainer) -> None:
        pass

    def after_step(self, trainer) -> None:
        pass

    def after_epoch(self, trainer) -> None:
        pass

    def after_train(self, trainer) -> None:
        pass

    def on_preempt(self, trainer) -> None:
        pass
