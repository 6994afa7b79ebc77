"""Trainer hooks: every method does nothing unless a hook overrides it."""

from typing import Any, Dict, Mapping, Optional


class HookBase:
    """Called by :class:`vise_plugin.engine.trainer.Trainer` at these points, on every rank.

    ``before_train`` runs after a resume, so ``trainer.iteration`` is where training starts.
    ``before_step`` runs once the batch is taken, before the step on it: ``trainer.skipped_images`` and
    ``trainer.images_read`` describe that batch. ``before_checkpoint`` runs on every rank before the
    checkpoint hook writes ``trainer.state_dict()`` (after it has checked the loss is finite): a hook
    whose state spans the ranks agrees on it there. ``on_preempt`` runs when the job was asked to stop
    early (SLURM's preemption signal), after the step in progress has finished.

    A hook with state sets ``state_key``: the trainer saves :meth:`state_dict` in the checkpoint under
    that key and hands it to :meth:`load_state_dict` on a resume.
    """

    state_key: Optional[str] = None

    def before_train(self, trainer) -> None:
        pass

    def before_step(self, trainer) -> None:
        pass

    def after_step(self, trainer) -> None:
        pass

    def after_epoch(self, trainer) -> None:
        pass

    def before_checkpoint(self, trainer) -> None:
        pass

    def after_train(self, trainer) -> None:
        pass

    def on_preempt(self, trainer) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
