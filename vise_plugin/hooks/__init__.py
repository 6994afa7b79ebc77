from .checkpoint_hook import PhaseCheckpointHook
from .log_hook import TrainLogHook

__all__ = ["PhaseCheckpointHook", "TrainLogHook"]
