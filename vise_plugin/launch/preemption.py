"""SLURM's early-warning signal (USR2 as submitit asks for it) as a flag read between training steps."""

import logging
import os
import signal
from typing import Any, Optional

logger = logging.getLogger(__name__)


class Preempted(Exception):
    """Raised by the trainer after it has saved ``checkpoint.torch`` because the job was asked to stop."""

    def __init__(self, iteration: int, checkpoint: str):
        super().__init__(f"preempted at iteration {iteration}; {checkpoint} holds the state to resume from")
        self.iteration = iteration
        self.checkpoint = checkpoint


def preemption_signal() -> signal.Signals:
    """The signal submitit has SLURM send before a kill: ``$SUBMITIT_PREEMPT_SIGNAL``, USR2 by default."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, name if name.startswith("SIG") else "SIG" + name)


class PreemptionFlag:
    """Sets ``requested`` when the preemption signal arrives instead of acting inside the handler,
    which could run in the middle of an optimizer step.

    ``install()`` keeps the handler it replaces in ``previous`` (submitit's requeue handler when
    the job runs under submitit), for the job to call once the checkpoint is written.
    """

    def __init__(self, signum: Optional[int] = None):
        self.signum = signum if signum is not None else preemption_signal()
        self.requested = False
        self.previous: Any = None

    def install(self) -> "PreemptionFlag":
        self.previous = signal.signal(self.signum, self._handle)
        return self

    def uninstall(self) -> None:
        if self.previous is not None:
            signal.signal(self.signum, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            logger.warning(
                "received %s: saving a checkpoint after the current step, then stopping", signal.Signals(signum).name
            )
        self.requested = True
