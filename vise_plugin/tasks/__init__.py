from vise_plugin.tasks.pretrain_task import VisEPretrainTask

__all__ = ["VisEPretrainTask"]
