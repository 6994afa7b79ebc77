from .base import HookBase
from .checkpoint_hook import PeriodicCheckpointHook
from .curves_hook import TrainingCurvesHook
from .log_hook import TrainLogHook
from .tensorboard_writer import TensorboardWriter, tensorboard_writer

__all__ = ["HookBase", "PeriodicCheckpointHook", "TensorboardWriter", "TrainLogHook", "TrainingCurvesHook",
           "tensorboard_writer"]
