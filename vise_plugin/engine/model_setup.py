"""Putting the model on its device for training: memory format, SyncBN, DDP and ``torch.compile``."""

import logging

import torch
import torch.nn as nn

from vise_plugin.errors import ConfigError

logger = logging.getLogger(__name__)


def prepare_model(
    model: nn.Module,
    device: torch.device,
    channels_last: bool = False,
    sync_bn: bool = False,
    distributed: bool = False,
    compile_model: bool = False,
) -> nn.Module:
    """Moves ``model`` to ``device`` (in place) and returns the module the training step calls.

    ``sync_bn`` converts BatchNorm layers to ``SyncBatchNorm`` (statistics over every rank's batch;
    GPU only; with one process it does nothing and says so). With ``distributed`` the model is wrapped in
    ``DistributedDataParallel``; with
    ``compile_model`` the result is passed through ``torch.compile``.
    """
    if sync_bn and not distributed:
        logger.warning("config.speed.sync_bn=true has no effect with one process; BatchNorm stays as it is")
    elif sync_bn:
        if device.type != "cuda":
            raise ConfigError("config.speed.sync_bn=true needs GPUs; set it to false for CPU runs")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    wrapped = model
    if distributed:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if compile_model:
        wrapped = torch.compile(wrapped)
    return wrapped
