"""Pretraining: assemble the trainer from the config, every part through a registry, and run it."""

import logging
import os
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from vise_plugin.data.bad_images import BadImageBudget, collate_readable
from vise_plugin.data.decoded_loader import DeviceDecodedLoader
from vise_plugin.data.device_decode import DeviceDecode, decodes_on_device
from vise_plugin.data.jpeg_decoders import jpeg_decoder
from vise_plugin.data.pretraining_images import SeededItems
from vise_plugin.data.resumable_sampler import ResumableBatchSampler
from vise_plugin.data.target_sources import check_target_sources
from vise_plugin.engine.checkpoint import Checkpointer
from vise_plugin.engine.determinism import CUBLAS_WORKSPACE
from vise_plugin.engine.distributed import close_distributed, init_distributed, use_gpu
from vise_plugin.engine.hooks import (
    BadImageHook,
    PeriodicCheckpointHook,
    TrainingCurvesHook,
    TrainLogHook,
    tensorboard_writer,
)
from vise_plugin.engine.model_setup import prepare_model
from vise_plugin.engine.precision import MixedPrecision
from vise_plugin.engine.run_folder import setup_logging, write_resolved_config
from vise_plugin.engine.schedule import lr_schedule
from vise_plugin.engine.trainer import Trainer
from vise_plugin.engine.training_curves import STDOUT_JSON
from vise_plugin.errors import ConfigError
from vise_plugin.launch.preemption import PreemptionFlag
from vise_plugin.models import VisEModel
from vise_plugin.process_state import keeps_process_state, seeded
from vise_plugin.ranks import rank_from_env, world_size_from_env
from vise_plugin.registry import DATASET_REGISTRY, ENGINES, build_classy, spec

logger = logging.getLogger(__name__)

__all__ = ["build_dataset", "build_loader", "build_model_and_loss", "build_trainer", "pretrain", "require_inputs"]


def _data_config(cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg.data, resolve=True)


def _dataset_config(cfg: DictConfig) -> Dict[str, Any]:
    """``config.data.dataset`` with what the runner gives every pretraining dataset: the target sources
    of ``config.data.sources``, ``config.data`` itself, the run folder and the image settings."""
    data = _data_config(cfg)
    injected = {
        "sources": data["sources"],
        "data": data,
        "run_dir": cfg.run_dir,
        "batchsize_per_replica": data["batch_size_per_gpu"],
        "image_size": data["image_size"],
        "crop_scale_min": data["crop_scale_min"],
        "subset": data["subset"],
        "seed": cfg.seed,
        "skip_unreadable": True,
        "decode_on": data["decode_on"],
    }
    return {**injected, **spec(data["dataset"], "config.data.dataset")}


def require_inputs(cfg: DictConfig) -> None:
    """Fails in one line, before any work or queueing, when the config names a part nothing is registered
    under (trunk, heads, loss, dataset, lr schedule), the warm-up is not shorter than the run,
    ``config.speed.precision`` or ``config.device`` is not a known value, an input of the dataset is missing (the
    dataset class's ``check_inputs``; by default the inputs of the target sources of
    ``config.data.sources``, e.g. the label store, a tag list), or ``config.data.decode_on`` is not a
    known value (nor, decoding on the device, ``config.data.jpeg_decoder`` an installed decoder)."""
    from vise_plugin.config.named_parts import check_named_parts
    from vise_plugin.engine.schedule import check_lr_schedule

    check_named_parts(cfg)
    check_lr_schedule(cfg.optimizer.num_epochs, cfg.optimizer.warmup_epochs, cfg.optimizer.schedule)
    MixedPrecision(cfg.speed.precision)
    if cfg.device != "cuda" or not cfg.slurm.use_slurm:  # a submitted job looks for its GPU where it runs
        use_gpu(cfg.device)
    if decodes_on_device(cfg.data.decode_on):
        jpeg_decoder(cfg.data.jpeg_decoder)
    config = _dataset_config(cfg)
    check = getattr(DATASET_REGISTRY.get(config["name"]), "check_inputs", None)
    if check is not None:
        check(config)
    else:
        check_target_sources(config["sources"], config["data"])


def build_dataset(cfg: DictConfig) -> torch.utils.data.Dataset:
    """The dataset of ``config.data.dataset`` (classy-vision's dataset registry), built from
    :func:`_dataset_config`; unreadable images are skipped (the trainer counts them)."""
    dataset = build_classy("dataset", _dataset_config(cfg), "config.data.dataset")
    images = getattr(dataset, "dataset", dataset)
    return images if hasattr(images, "placeholder_item") else SeededItems(images)


def build_loader(cfg: DictConfig, images: torch.utils.data.Dataset, gpu: bool) -> torch.utils.data.DataLoader:
    """The training DataLoader of this rank: seeded, resumable batches."""
    data, speed = cfg.data, cfg.speed
    if len(images) == 0 or getattr(images, "num_items", 1) == 0:
        where = images.describe() if hasattr(images, "describe") else "config.data.dataset"
        raise ConfigError(f"{where}: no images to train on")
    workers = int(data.num_workers)
    if isinstance(images, torch.utils.data.IterableDataset):  # it yields this rank's whole batches itself
        return torch.utils.data.DataLoader(
            images,
            batch_size=None,
            num_workers=workers,
            pin_memory=gpu and speed.pin_memory,
            prefetch_factor=speed.prefetch_factor if workers > 0 else None,
            multiprocessing_context="fork" if workers > 0 else None,
        )
    sampler = ResumableBatchSampler(
        len(images),
        data.batch_size_per_gpu,
        rank_from_env(),
        world_size_from_env(),
        cfg.seed,
        groups=getattr(images, "groups", None),
    )
    return torch.utils.data.DataLoader(
        images,
        batch_sampler=sampler,
        collate_fn=getattr(images, "collate", collate_readable),
        num_workers=workers,
        pin_memory=gpu and speed.pin_memory,
        persistent_workers=workers > 0 and speed.persistent_workers,
        prefetch_factor=speed.prefetch_factor if workers > 0 else None,
        multiprocessing_context="fork" if workers > 0 else None,
    )


def build_model_and_loss(cfg: DictConfig, targets: Dict[str, Dict[str, Any]]) -> Tuple[VisEModel, nn.Module]:
    """The trunk with the heads of ``config.model.heads`` and the loss of ``config.loss``, each built
    through classy-vision's registries with the data's ``targets`` (and, for heads, the trunk's
    channels) added to its config. The weights are drawn from ``config.seed``; the caller's random
    generators are left as they were."""
    with seeded(cfg.seed):
        model = VisEModel.build(cfg.model.trunk, OmegaConf.to_container(cfg.model.heads, resolve=True), targets)
        loss = build_classy(
            "loss",
            {**spec(OmegaConf.to_container(cfg.loss, resolve=True), "config.loss"), "targets": targets},
            "config.loss",
        )
    return model, loss


def build_trainer(root_cfg: DictConfig, preemption: PreemptionFlag = None) -> Trainer:
    """The trainer for a composed config (``root_cfg.config``): data (decoded on the device when
    ``config.data.decode_on=device``), model, loss, SGD, hooks."""
    cfg = root_cfg.config
    gpu = use_gpu(cfg.device)
    device = torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")
    primary = rank_from_env() == 0
    speed = cfg.speed
    images = build_dataset(cfg)
    loader = build_loader(cfg, images, gpu)
    if decodes_on_device(cfg.data.decode_on):
        decode = DeviceDecode(cfg.data.image_size, cfg.data.jpeg_decoder)
        loader = DeviceDecodedLoader(loader, decode, device, speed.channels_last)
    targets = images.target_specs() if hasattr(images, "target_specs") else {}
    model, loss = build_model_and_loss(cfg, targets)
    wrapped = prepare_model(model, device, speed.channels_last, speed.sync_bn, world_size_from_env() > 1, speed.compile)
    opt = cfg.optimizer
    global_batch = cfg.data.batch_size_per_gpu * world_size_from_env()
    peak_lr = opt.lr * (global_batch / opt.lr_reference_batch if opt.lr_reference_batch else 1.0)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=peak_lr, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=opt.nesterov
    )
    tensorboard = tensorboard_writer(os.path.join(cfg.run_dir, "tb_logs"), cfg.logging.tensorboard) if primary else None
    bad_images = BadImageBudget(
        cfg.data.max_bad_image_fraction, f" under {images.image_root}" if getattr(images, "image_root", "") else ""
    )
    hooks = [
        TrainLogHook(
            cfg.logging.log_freq,
            os.path.join(cfg.run_dir, STDOUT_JSON),
            enabled=primary,
            writers=[tensorboard] if tensorboard else [],
            bad_images=bad_images,
        ),
        PeriodicCheckpointHook(cfg.checkpoint.period_epochs, cfg.checkpoint.period_iterations),
        TrainingCurvesHook(cfg.run_dir, enabled=primary, min_interval_s=cfg.logging.curves_min_interval_s),
        BadImageHook(bad_images),  # last: the ranks agree on the counts after the other hooks' step
    ]
    return Trainer(
        wrapped,
        model,
        loss,
        optimizer,
        lr_schedule(peak_lr, opt.num_epochs, opt.warmup_epochs, opt.schedule),
        loader,
        opt.num_epochs,
        device,
        precision=MixedPrecision(speed.precision, device.type),
        channels_last=speed.channels_last,
        hooks=hooks,
        checkpointer=Checkpointer(
            cfg.run_dir,
            enabled=primary,
            read_attempts=cfg.checkpoint.read_attempts,
            retry_delay_s=cfg.checkpoint.read_retry_delay_s,
        ),
        preemption=preemption,
        preemption_check_every=cfg.distributed.preemption_check_every,
        extra_state={
            "trunk": cfg.model.trunk,
            "tasks": {name: t["num_classes"] for name, t in targets.items() if "num_classes" in t},
            "heads": OmegaConf.to_container(cfg.model.heads, resolve=True),
            "config": OmegaConf.to_container(root_cfg, resolve=True),
        },
        cpu_threads=cfg.speed.cpu_threads,
        deterministic=cfg.speed.deterministic,
    )


@ENGINES.register("pretrain")
@keeps_process_state
def pretrain(root_cfg: DictConfig) -> Trainer:
    """Runs VisE pretraining for a composed config (``root_cfg.config``); returns the trainer.

    With several processes (``torchrun``, or SLURM through the submitit launcher) it trains with
    DDP. It continues from the newest checkpoint of the run folder unless ``config.resume=false``.
    On the preemption signal it saves ``checkpoint.torch`` and raises :class:`Preempted`. Threads, random
    generators, kernel flags and log handlers it sets (``config.speed.cpu_threads``, ``deterministic``) are
    put back when it returns.
    """
    cfg = root_cfg.config
    require_inputs(cfg)
    if cfg.speed.deterministic:  # cuBLAS reads it once, at its first call in the process: before any CUDA work
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    primary = rank_from_env() == 0
    setup_logging(cfg.run_dir, primary)
    init_distributed(use_gpu(cfg.device), cfg.distributed.backend, cfg.distributed.rendezvous_timeout_s)
    if primary:
        write_resolved_config(root_cfg, cfg.run_dir)
    preemption = PreemptionFlag().install()
    try:
        trainer = build_trainer(root_cfg, preemption)
        torch.manual_seed(cfg.seed)  # the run's own draws come from config.seed (a resume: from its checkpoint)
        if cfg.resume:
            trainer.resume_or_start()
        else:
            trainer.start_over()
        logger.info(
            "pretraining %s with %s on %d images (%s), targets %s, %s, %s, from iteration %d of %d",
            cfg.model.trunk,
            ", ".join(spec(h, "config.model.heads")["name"] for h in cfg.model.heads),
            trainer.sampler.num_items,
            getattr(trainer.loader.dataset, "describe", lambda: "")(),
            list(trainer.extra_state["tasks"]),
            trainer.device,
            cfg.speed.precision,
            trainer.iteration,
            trainer.max_iterations,
        )
        trainer.train()
        close_distributed()
    finally:
        preemption.uninstall()
    return trainer


pretrain.multi_process = True  # runs on every rank of a torchrun or submitit job
pretrain.check_inputs = require_inputs  # what the launcher checks before queueing
