"""Checkpoints named as VISSL users expect: ``model_phase<N>.torch`` plus ``checkpoint.torch``."""

from typing import Any, Dict, Optional

from classy_vision.generic.distributed_util import is_primary
from classy_vision.hooks import CheckpointHook


class PhaseCheckpointHook(CheckpointHook):
    """classy-vision's checkpoint hook, saving every ``period`` train phases and after the last one.

    Each save writes ``checkpoint.torch`` (the newest, read by resume) and a copy
    ``model_phase<N>.torch``. Loadable with ``torch.load(weights_only=True)``.
    """

    def __init__(self, folder: str, input_args: Optional[Dict[str, Any]] = None, period: int = 1):
        super().__init__(folder, input_args, phase_types=["train"], checkpoint_period=period)
        self._saved_phase = -1

    @classmethod
    def get_checkpoint_name(cls, phase_idx: int) -> str:
        return f"model_phase{phase_idx}.torch"

    def _save_checkpoint(self, task, filename):
        super()._save_checkpoint(task, filename)
        self._saved_phase = task.phase_idx

    def on_phase_end(self, task) -> None:
        if not is_primary() or task.phase_type not in self.phase_types:
            return
        if (task.train_phase_idx + 1) % self.checkpoint_period == 0:
            self._save_checkpoint(task, self.get_checkpoint_name(task.phase_idx))

    def on_end(self, task) -> None:
        if is_primary() and task.train_phase_idx >= 0 and self._saved_phase != task.phase_idx:
            self._save_checkpoint(task, self.get_checkpoint_name(task.phase_idx))
