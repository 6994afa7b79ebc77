"""VisE pretraining: assemble the classy-vision task from the config and train it."""

import logging
import os
from typing import List

import torch
from classy_vision.hooks import ClassyHook
from classy_vision.optim import SGD
from classy_vision.trainer import DistributedTrainer, LocalTrainer
from iopath.common.file_io import g_pathmgr
from omegaconf import DictConfig, OmegaConf

from ..data.engagement_dataset import VisEEngagementDataset
from ..errors import ConfigError
from ..hooks import PhaseCheckpointHook, TrainLogHook
from ..losses import VisELoss
from ..models import VisEModel
from ..tasks import VisEPretrainTask
from .distributed import rank_from_env, use_gpu, world_size_from_env
from .run_folder import setup_logging, write_resolved_config
from .schedule import lr_schedule

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.torch"


def require_label_store(cfg: DictConfig) -> str:
    """The label store folder of ``config.data.labels``, or a :class:`ConfigError` naming the override."""
    path = cfg.data.labels
    if not path or not g_pathmgr.exists(os.path.join(path, "meta.json")):
        raise ConfigError(
            f"label store not found: {path or '(unset)'}; point config.data.labels=<folder> at one "
            "written by tools/generate_labels.py"
        )
    return path


def build_task(cfg: DictConfig, run_dir: str, hooks: List[ClassyHook]) -> VisEPretrainTask:
    """The full task for ``cfg`` (the ``config`` node): dataset, model, loss, optimizer, hooks."""
    dataset = VisEEngagementDataset(
        labels=require_label_store(cfg),
        image_root=cfg.data.image_root,
        batchsize_per_replica=cfg.data.batch_size_per_gpu,
        image_size=cfg.data.image_size,
        crop_scale_min=cfg.data.crop_scale_min,
        subset=cfg.data.subset,
        seed=cfg.seed,
    )
    dataset.set_num_workers(cfg.data.num_workers)
    tasks = {name: dataset.store.num_classes(name) for name in cfg.model.tasks}
    torch.manual_seed(cfg.seed)
    model = VisEModel.build(cfg.model.trunk, tasks)
    opt = cfg.optimizer
    global_batch = cfg.data.batch_size_per_gpu * world_size_from_env()
    peak_lr = opt.lr * (global_batch / opt.lr_reference_batch if opt.lr_reference_batch else 1.0)
    task = (
        VisEPretrainTask()
        .set_num_epochs(opt.num_epochs)
        .set_dataset(dataset, "train")
        .set_model(model)
        .set_loss(VisELoss(weights=dict(cfg.loss.weights)))
        .set_optimizer(SGD(lr=peak_lr, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=opt.nesterov))
        .set_optimizer_schedulers({"lr": lr_schedule(peak_lr, opt.num_epochs, opt.warmup_epochs, opt.schedule)})
        .set_meters([])
        .set_hooks(hooks)
    )
    task.set_use_gpu(use_gpu(cfg.device))
    task.set_dataloader_mp_context("fork" if not task.use_gpu else "spawn")
    if cfg.resume and g_pathmgr.exists(os.path.join(run_dir, CHECKPOINT_FILE)):
        logger.info("resuming from %s", os.path.join(run_dir, CHECKPOINT_FILE))
        task.set_checkpoint(run_dir)
    return task


def pretrain(root_cfg: DictConfig) -> VisEPretrainTask:
    """Runs VisE pretraining for a composed config (``root_cfg.config``); returns the trained task.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DDP; otherwise in this process.
    """
    cfg = root_cfg.config
    require_label_store(cfg)
    run_dir = cfg.run_dir
    primary = rank_from_env() == 0
    setup_logging(run_dir, primary)
    if primary:
        write_resolved_config(root_cfg, run_dir)
    hooks = [
        TrainLogHook(cfg.logging.log_freq, os.path.join(run_dir, "stdout.json")),
        PhaseCheckpointHook(run_dir, {"config": OmegaConf.to_container(root_cfg, resolve=True)},
                            cfg.checkpoint.period_epochs),
    ]
    task = build_task(cfg, run_dir, hooks)
    trainer = DistributedTrainer() if world_size_from_env() > 1 else LocalTrainer()
    logger.info("pretraining %s on %d posts, tasks %s, %s", cfg.model.trunk, len(task.datasets["train"]),
                list(cfg.model.tasks), "GPU" if task.use_gpu else "CPU")
    trainer.train(task)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # every rank waits for rank 0's last checkpoint; an implicit teardown at exit can abort gloo
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return task
