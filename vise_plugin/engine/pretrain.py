"""VisE pretraining: assemble the trainer from the config and run it."""

import logging
import os
from typing import Optional

import torch
from iopath.common.file_io import g_pathmgr
from omegaconf import DictConfig, OmegaConf

from ..data.bad_images import BadImageBudget, collate_readable
from ..data.engagement_dataset import EngagementImages, subset_indices
from ..data.label_store import LabelStore
from ..data.resumable_sampler import ResumableBatchSampler
from ..data.tag_table import TagTable
from ..data.tagged_images import TaggedImages
from ..data.transforms import train_transform
from ..errors import ConfigError
from ..hooks import PeriodicCheckpointHook, TrainingCurvesHook, TrainLogHook, tensorboard_writer
from ..launch.preemption import PreemptionFlag
from ..labels.tag_embeddings import tag_text_embeddings
from ..losses import MergedLoss, VisELoss, WebTagLoss
from ..models import VisEModel
from .checkpoint import Checkpointer
from .distributed import close_distributed, init_distributed, rank_from_env, use_gpu, world_size_from_env
from .model_setup import prepare_model
from .precision import MixedPrecision
from .run_folder import setup_logging, write_resolved_config
from .schedule import lr_schedule
from .training_curves import STDOUT_JSON
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["build_trainer", "pretrain", "require_inputs", "require_label_store"]


def require_label_store(cfg: DictConfig) -> str:
    """The label store folder of ``config.data.labels``, or a :class:`ConfigError` naming the override."""
    path = cfg.data.labels
    if not path or not g_pathmgr.exists(os.path.join(path, "meta.json")):
        raise ConfigError(
            f"label store not found: {path or '(unset)'}; point config.data.labels=<folder> at one "
            "written by tools/generate_labels.py"
        )
    return path


TAG_TASK = "tags"


def vise_tasks(cfg: DictConfig) -> list:
    """The engagement tasks of ``config.model.tasks`` (everything but ``tags``)."""
    return [t for t in cfg.model.tasks if t != TAG_TASK]


def require_inputs(cfg: DictConfig) -> None:
    """Fails in one line, before any work or queueing, when the tasks' inputs are not there: the label
    store for VisE tasks, the tag list and vocabulary for ``tags``."""
    if vise_tasks(cfg):
        require_label_store(cfg)
    if TAG_TASK in cfg.model.tasks:
        t = cfg.data.tags
        if not t.list or not t.vocab:
            raise ConfigError("config.model.tasks has 'tags': set config.data.tags.list=<.pkl or .jsonl> and "
                              "config.data.tags.vocab=<one tag per line>")
        for key in ("list", "vocab"):
            if not g_pathmgr.exists(t[key]):
                raise ConfigError(f"config.data.tags.{key}: {t[key]} not found")


def build_dataset(cfg: DictConfig, tags: Optional[TagTable]) -> torch.utils.data.Dataset:
    """Engagement posts of the label store (with their web tags when ``tags`` is given), or, for a
    tags-only run, the images of the tag list."""
    data = cfg.data
    transform = train_transform(data.image_size, data.crop_scale_min)
    if not vise_tasks(cfg):
        root = data.tags.image_root or os.path.dirname(data.tags.list)
        return TaggedImages(tags, root, transform, skip_unreadable=True)
    store = LabelStore(require_label_store(cfg))
    return EngagementImages(store, data.image_root or store.meta.get("image_root", ""), transform,
                            subset_indices(len(store), data.subset, cfg.seed), skip_unreadable=True, tags=tags)


def build_loader(cfg: DictConfig, images: torch.utils.data.Dataset, gpu: bool) -> torch.utils.data.DataLoader:
    """The training DataLoader of this rank: seeded, resumable batches."""
    data, speed = cfg.data, cfg.speed
    if len(images) == 0:
        raise ConfigError(f"{cfg.data.labels if vise_tasks(cfg) else cfg.data.tags.list}: no posts to train on")
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


def build_model_and_loss(cfg: DictConfig, images: torch.utils.data.Dataset, tags: Optional[TagTable]):
    """The VisE heads for the engagement tasks, the web-tag head for ``tags``, and the matching loss."""
    store = getattr(images, "store", None)
    tasks = {name: store.num_classes(name) for name in vise_tasks(cfg)}
    parts, tag_head = [], None
    if tasks:
        parts.append((VisELoss(weights=dict(cfg.loss.weights)), list(tasks)))
    if tags is not None:
        embeddings = torch.from_numpy(tag_text_embeddings(tags.vocabulary, cfg.data.tags.text_encoder, cfg.run_dir))
        tag_head = (tags.num_tags, embeddings.shape[1])
        parts.append((WebTagLoss(embeddings, weights=dict(cfg.loss.weights)), ["tags", "tag_embedding"]))
    torch.manual_seed(cfg.seed)
    model = VisEModel.build(cfg.model.trunk, tasks, tag_head)
    loss = parts[0][0] if len(parts) == 1 else MergedLoss(parts)
    heads = {**tasks, **({TAG_TASK: tags.num_tags} if tags is not None else {})}
    return model, loss, heads


def build_trainer(root_cfg: DictConfig, preemption: PreemptionFlag = None) -> Trainer:
    """The trainer for a composed config (``root_cfg.config``): data, model, loss, SGD, hooks."""
    cfg = root_cfg.config
    gpu = use_gpu(cfg.device)
    device = torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")
    primary = rank_from_env() == 0
    tags = TagTable.read(cfg.data.tags.list, cfg.data.tags.vocab) if TAG_TASK in cfg.model.tasks else None
    images = build_dataset(cfg, tags)
    loader = build_loader(cfg, images, gpu)
    model, loss, heads = build_model_and_loss(cfg, images, tags)
    speed = cfg.speed
    wrapped = prepare_model(model, device, speed.channels_last, speed.sync_bn, world_size_from_env() > 1,
                            speed.compile)
    opt = cfg.optimizer
    global_batch = cfg.data.batch_size_per_gpu * world_size_from_env()
    peak_lr = opt.lr * (global_batch / opt.lr_reference_batch if opt.lr_reference_batch else 1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=peak_lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=opt.nesterov)
    tensorboard = tensorboard_writer(os.path.join(cfg.run_dir, "tb_logs"), cfg.logging.tensorboard) if primary else None
    hooks = [
        TrainLogHook(cfg.logging.log_freq, os.path.join(cfg.run_dir, STDOUT_JSON), enabled=primary,
                     writers=[tensorboard] if tensorboard else []),
        PeriodicCheckpointHook(cfg.checkpoint.period_epochs, cfg.checkpoint.period_iterations),
        TrainingCurvesHook(cfg.run_dir, enabled=primary, min_interval_s=cfg.logging.curves_min_interval_s),
    ]
    return Trainer(
        wrapped, model, loss, optimizer,
        lr_schedule(peak_lr, opt.num_epochs, opt.warmup_epochs, opt.schedule), loader, opt.num_epochs, device,
        precision=MixedPrecision(speed.precision, device.type), channels_last=speed.channels_last, hooks=hooks,
        checkpointer=Checkpointer(cfg.run_dir, enabled=primary, read_attempts=cfg.checkpoint.read_attempts,
                                  retry_delay_s=cfg.checkpoint.read_retry_delay_s), preemption=preemption,
        preemption_check_every=cfg.distributed.preemption_check_every,
        extra_state={"trunk": cfg.model.trunk, "tasks": heads,
                     "config": OmegaConf.to_container(root_cfg, resolve=True)},
        bad_images=BadImageBudget(cfg.data.max_bad_image_fraction, f" under {images.image_root}"),
    )


def pretrain(root_cfg: DictConfig) -> Trainer:
    """Runs VisE pretraining for a composed config (``root_cfg.config``); returns the trainer.

    With several processes (``torchrun``, or SLURM through the submitit launcher) it trains with
    DDP. It continues from the newest checkpoint of the run folder unless ``config.resume=false``.
    On the preemption signal it saves ``checkpoint.torch`` and raises :class:`Preempted`.
    """
    cfg = root_cfg.config
    require_inputs(cfg)
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
        else:
            trainer.start_over()
        logger.info("pretraining %s on %d images, tasks %s, %s, %s, from iteration %d of %d", cfg.model.trunk,
                    trainer.sampler.num_items, list(cfg.model.tasks), trainer.device, cfg.speed.precision,
                    trainer.iteration, trainer.max_iterations)
        trainer.train()
        close_distributed()
    finally:
        preemption.uninstall()
    return trainer
