from .base import HookBase
from .checkpoint_hook import PeriodicCheckpointHook
from .log_hook import TrainLogHook

__all__ = ["HookBase", "PeriodicCheckpointHook", "TrainLogHook"]
