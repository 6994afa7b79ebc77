"""Where a run executes: device choice and whether ``torchrun`` started several processes."""

import datetime
import os

import torch

from vise_plugin.errors import ConfigError, UserError
from vise_plugin.ranks import local_rank_from_env, rank_from_env, world_size_from_env


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


def init_distributed(gpu: bool, backend: str = "auto", timeout_s: float = 600.0) -> None:
    """Joins the process group described by ``torchrun``-style variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``; the submitit launcher sets the same), when there is more
    than one process. On GPU each process uses the device ``LOCAL_RANK``.

    Raises:
        UserError: the ranks did not all meet within ``timeout_s`` (one line naming the address tried).
    """
    if gpu:
        torch.cuda.set_device(local_rank_from_env())
    if world_size_from_env() <= 1 or torch.distributed.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if gpu else "gloo"
    try:
        torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, TimeoutError, ValueError) as e:  # torch's DistError and store errors are RuntimeErrors
        address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        first_line = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(
            f"rank {rank_from_env()} of {world_size_from_env()} could not meet the other ranks at "
            f"{address} within config.distributed.rendezvous_timeout_s={timeout_s:g} ({first_line})"
        ) from None


def close_distributed() -> None:
    """Waits for every rank (the first may still be writing its last checkpoint), then leaves the group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
