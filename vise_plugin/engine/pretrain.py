"""VisE pretraining: assemble the trainer from the config and run it."""

import logging
import os

import torch
from iopath.common.file_io import g_pathmgr
from omegaconf import DictConfig, OmegaConf

from ..data.bad_images import BadImageBudget, collate_readable
from ..data.engagement_dataset import EngagementImages, subset_indices
from ..data.label_store import LabelStore
from ..data.resumable_sampler import ResumableBatchSampler
from ..data.transforms import train_transform
from ..errors import ConfigError
from ..hooks import PeriodicCheckpointHook, TrainLogHook
from ..launch.preemption import PreemptionFlag
from ..losses import VisELoss
from ..models import VisEModel
from .checkpoint import CHECKPOINT_FILE, Checkpointer
from .distributed import close_distributed, init_distributed, rank_from_env, use_gpu, world_size_from_env
from .model_setup import prepare_model
from .precision import MixedPrecision
from .run_folder import setup_logging, write_resolved_config
from .schedule import lr_schedule
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FILE", "build_trainer", "pretrain", "require_label_store"]


def require_label_store(cfg: DictConfig) -> str:
    """The label store folder of ``config.data.labels``, or a :class:`ConfigError` naming the override."""
    path = cfg.data.labels
    if not path or not g_pathmgr.exists(os.path.join(path, "meta.json")):
        raise ConfigError(
            f"label store not found: {path or '(unset)'}; point config.data.labels=<folder> at one "
            "written by tools/generate_labels.py"
        )
    return path


def build_loader(cfg: DictConfig, store: LabelStore, gpu: bool) -> torch.utils.data.DataLoader:
    """The training DataLoader of this rank: seeded, resumable batches of the label store's posts."""
    data, speed = cfg.data, cfg.speed
    images = EngagementImages(store, data.image_root or store.meta.get("image_root", ""),
                              train_transform(data.image_size, data.crop_scale_min),
                              subset_indices(len(store), data.subset, cfg.seed), skip_unreadable=True)
    if len(images) == 0:
        raise ConfigError(f"{cfg.data.labels}: the label store has no posts to train on")
    sampler = ResumableBatchSampler(len(images), data.batch_size_per_gpu, rank_from_env(), world_size_from_env(),
                                    cfg.seed)
    workers = int(data.num_workers)
    return torch.utils.data.DataLoader(
        images, batch_sampler=sampler, collate_fn=collate_readable, num_workers=workers,
        pin_memory=gpu and speed.pin_memory,
        persistent_workers=workers > 0 and speed.persistent_workers,
        prefetch_factor=speed.prefetch_factor if workers > 0 else None,
        multiprocessing_context="fork" if workers > 0 else None,
    )


def build_trainer(root_cfg: DictConfig, preemption: PreemptionFlag = None) -> Trainer:
    """The trainer for a composed config (``root_cfg.config``): data, model, loss, SGD, hooks."""
    cfg = root_cfg.config
    store = LabelStore(require_label_store(cfg))
    gpu = use_gpu(cfg.device)
    device = torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")
    primary = rank_from_env() == 0
    loader = build_loader(cfg, store, gpu)
    tasks = {name: store.num_classes(name) for name in cfg.model.tasks}
    torch.manual_seed(cfg.seed)
    model = VisEModel.build(cfg.model.trunk, tasks)
    speed = cfg.speed
    wrapped = prepare_model(model, device, speed.channels_last, speed.sync_bn, world_size_from_env() > 1,
                            speed.compile)
    opt = cfg.optimizer
    global_batch = cfg.data.batch_size_per_gpu * world_size_from_env()
    peak_lr = opt.lr * (global_batch / opt.lr_reference_batch if opt.lr_reference_batch else 1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=peak_lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=opt.nesterov)
    hooks = [
        TrainLogHook(cfg.logging.log_freq, os.path.join(cfg.run_dir, "stdout.json"), enabled=primary),
        PeriodicCheckpointHook(cfg.checkpoint.period_epochs, cfg.checkpoint.period_iterations),
    ]
    return Trainer(
        wrapped, model, VisELoss(weights=dict(cfg.loss.weights)), optimizer,
        lr_schedule(peak_lr, opt.num_epochs, opt.warmup_epochs, opt.schedule), loader, opt.num_epochs, device,
        precision=MixedPrecision(speed.precision, device.type), channels_last=speed.channels_last, hooks=hooks,
        checkpointer=Checkpointer(cfg.run_dir, enabled=primary), preemption=preemption,
        preemption_check_every=cfg.distributed.preemption_check_every,
        extra_state={"trunk": cfg.model.trunk, "tasks": tasks,
                     "config": OmegaConf.to_container(root_cfg, resolve=True)},
        bad_images=BadImageBudget(cfg.data.max_bad_image_fraction, f" under {loader.dataset.image_root}"),
    )


def pretrain(root_cfg: DictConfig) -> Trainer:
    """Runs VisE pretraining for a composed config (``root_cfg.config``); returns the trainer.

    With several processes (``torchrun``, or SLURM through the submitit launcher) it trains with
    DDP. It continues from the newest checkpoint of the run folder unless ``config.resume=false``.
    On the preemption signal it saves ``checkpoint.torch`` and raises :class:`Preempted`.
    """
    cfg = root_cfg.config
    require_label_store(cfg)
    primary = rank_from_env() == 0
    setup_logging(cfg.run_dir, primary)
    init_distributed(use_gpu(cfg.device), cfg.distributed.backend)
    if primary:
        write_resolved_config(root_cfg, cfg.run_dir)
    preemption = PreemptionFlag().install()
    try:
        trainer = build_trainer(root_cfg, preemption)
        if cfg.resume:
            trainer.resume_or_start()
        logger.info("pretraining %s on %d posts, tasks %s, %s, %s, from iteration %d of %d", cfg.model.trunk,
                    trainer.sampler.num_items, list(cfg.model.tasks), trainer.device, cfg.speed.precision,
                    trainer.iteration, trainer.max_iterations)
        trainer.train()
        close_distributed()
    finally:
        preemption.uninstall()
    return trainer
