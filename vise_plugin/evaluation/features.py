"""Frozen-trunk features: extracted once, streamed to a memory-mapped ``.npy`` cache."""

import hashlib
import os
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from vise_plugin.engine.precision import MixedPrecision
from vise_plugin.errors import ConfigError
from vise_plugin.evaluation.loader_workers import loader_workers
from vise_plugin.labels.npy_appender import NpyAppender
from vise_plugin.registry import POOLING

LAYERS = ("res2", "res3", "res4", "res5")


def trunk_up_to(trunk: nn.Module, layer: str) -> nn.Module:
    """The trunk cut after stage ``layer`` (``res5``: the whole trunk, ``res4``: without its last stage, ...).

    Works for every registered trunk: each is an ``nn.Sequential`` whose last four children are its stages.
    """
    if layer not in LAYERS:
        raise ConfigError(f"layer {layer!r}: use one of {list(LAYERS)}")
    drop = len(LAYERS) - 1 - LAYERS.index(layer)
    return trunk if drop == 0 else nn.Sequential(*list(trunk.children())[:-drop])


@POOLING.register("avg")
def average_pool(out: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C)``, the global average."""
    return out.mean(dim=(2, 3))


@POOLING.register("none")
def flatten(out: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C*H*W)``."""
    return out.flatten(1)


def pool_features(out: torch.Tensor, pool: str) -> torch.Tensor:
    """``(B, C, H, W)`` through the pooling registered as ``pool``; ``(B, C)`` features pass as they are."""
    return out if out.dim() == 2 else POOLING.get(pool, "config.extract.pool")(out)


@torch.no_grad()
def extract_features(
    trunk: nn.Module,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str = "cpu",
    layer: str = "res5",
    pool: str = "avg",
    out: Optional[str] = None,
    desc: str = "features",
    precision: str = "fp32",
) -> np.ndarray:
    """Features of every item of ``dataset`` (items ``(image (3, S, S), ...)``), in order.

    Returns ``(N, D)`` float32: in memory, or, with ``out``, streamed to that ``.npy`` file (under a
    temporary name, renamed when complete) and opened memory-mapped. The trunk runs in eval mode and
    is put back in its previous mode afterwards; ``precision`` bf16/fp16 runs it under autocast. At most
    ``num_workers`` loader workers start, and no more than the CPUs this process may use.
    """
    was_training = trunk.training
    net = trunk_up_to(trunk, layer).eval().to(device)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=loader_workers(num_workers), pin_memory=device != "cpu"
    )
    writer, blocks = None, []
    amp = MixedPrecision(precision, torch.device(device).type)
    for batch in tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True):
        with amp.autocast():
            feats = pool_features(net(batch[0].to(device, non_blocking=True)), pool).float().cpu().numpy()
        if out is None:
            blocks.append(feats)
            continue
        writer = writer or NpyAppender(out + ".tmp", np.float32, feats.shape[1:])
        writer.append(feats)
    trunk.train(was_training)
    if out is None:
        return np.concatenate(blocks)
    writer.close()
    os.replace(out + ".tmp", out)
    return np.load(out, mmap_mode="r")


def state_fingerprint(module: nn.Module) -> str:
    """sha256 over every parameter and buffer, to check that a frozen trunk did not change."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
