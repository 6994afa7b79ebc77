from .pretrain_task import VisEPretrainTask

__all__ = ["VisEPretrainTask"]
