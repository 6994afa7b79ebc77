"""Frozen-trunk features: extracted once, streamed to a memory-mapped ``.npy`` cache."""

import hashlib
import json
import os
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..data.npy_appender import NpyAppender
from ..engine.precision import MixedPrecision
from ..errors import ConfigError

LAYERS = ("res2", "res3", "res4", "res5")


def trunk_up_to(trunk: nn.Module, layer: str) -> nn.Module:
    """The trunk cut after stage ``layer`` (``res5``: the whole trunk, ``res4``: without its last stage, ...).

    Works for every registered trunk: each is an ``nn.Sequential`` whose last four children are its stages.
    """
    if layer not in LAYERS:
        raise ConfigError(f"layer {layer!r}: use one of {list(LAYERS)}")
    drop = len(LAYERS) - 1 - LAYERS.index(layer)
    return trunk if drop == 0 else nn.Sequential(*list(trunk.children())[:-drop])


def pool_features(out: torch.Tensor, pool: str) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C)`` (``avg``: global average) or ``(B, C*H*W)`` (``none``)."""
    if out.dim() == 2:
        return out
    if pool == "avg":
        return out.mean(dim=(2, 3))
    if pool == "none":
        return out.flatten(1)
    raise ConfigError(f"pool {pool!r}: use avg or none")


@torch.no_grad()
def extract_features(trunk: nn.Module, dataset: torch.utils.data.Dataset, batch_size: int = 128,
                     num_workers: int = 0, device: str = "cpu", layer: str = "res5", pool: str = "avg",
                     out: Optional[str] = None, desc: str = "features", precision: str = "fp32") -> np.ndarray:
    """Features of every item of ``dataset`` (items ``(image (3, S, S), ...)``), in order.

    Returns ``(N, D)`` float32: in memory, or, with ``out``, streamed to that ``.npy`` file (under a
    temporary name, renamed when complete) and opened memory-mapped. The trunk runs in eval mode and
    is put back in its previous mode afterwards; ``precision`` bf16/fp16 runs it under autocast.
    """
    was_training = trunk.training
    net = trunk_up_to(trunk, layer).eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         pin_memory=device != "cpu")
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


class FeatureCache:
    """A folder of cached features, one ``<name>.npy`` per key, reused while the key matches.

    The key holds everything the features depend on (trunk fingerprint, image list, layer, image
    size); a changed key recomputes them.
    """

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def get(self, name: str, key: str, compute) -> np.ndarray:
        """Cached ``<name>.npy`` when its key matches, else ``compute(path)`` (which writes it)."""
        path, key_path = os.path.join(self.folder, f"{name}.npy"), os.path.join(self.folder, f"{name}.key")
        if os.path.exists(path) and os.path.exists(key_path):
            with open(key_path) as f:
                if f.read() == key:
                    return np.load(path, mmap_mode="r")
        if os.path.exists(key_path):
            os.remove(key_path)
        feats = compute(path)
        with open(key_path + ".tmp", "w") as f:
            f.write(key)
        os.replace(key_path + ".tmp", key_path)
        return feats


def list_digest(items: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()
