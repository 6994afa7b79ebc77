"""Where a run executes: device choice and whether ``torchrun`` started several processes."""

import os

import torch

from ..errors import ConfigError


def world_size_from_env() -> int:
    """Processes started by ``torchrun`` (``WORLD_SIZE``), 1 for a plain ``python`` run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_from_env() -> int:
    return int(os.environ.get("RANK", "0"))


def use_gpu(device: str) -> bool:
    """``auto`` picks the GPU when one is present; ``cuda`` without one is a config error."""
    if device == "auto":
        return torch.cuda.is_available()
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config.device=cuda but no GPU is visible; use config.device=auto or cpu")
        return True
    if device == "cpu":
        return False
    raise ConfigError(f"config.device={device!r}: use auto, cpu or cuda")
