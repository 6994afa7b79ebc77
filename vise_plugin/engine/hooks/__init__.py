from vise_plugin.engine.hooks.bad_images_hook import BadImageHook
from vise_plugin.engine.hooks.base import HookBase
from vise_plugin.engine.hooks.checkpoint_hook import PeriodicCheckpointHook
from vise_plugin.engine.hooks.curves_hook import TrainingCurvesHook
from vise_plugin.engine.hooks.log_hook import TrainLogHook
from vise_plugin.engine.hooks.tensorboard_writer import TensorboardWriter, tensorboard_writer

__all__ = [
    "BadImageHook",
    "HookBase",
    "PeriodicCheckpointHook",
    "TensorboardWriter",
    "TrainLogHook",
    "TrainingCurvesHook",
    "tensorboard_writer",
]
