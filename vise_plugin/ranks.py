"""This process's place among the run's processes, as ``torchrun`` and the submitit launcher set it in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); read by the data (which samples a rank reads) and by
the engine (joining the process group) alike."""

import os


def world_size_from_env() -> int:
    """Processes of the run (``WORLD_SIZE``, set by ``torchrun`` or the submitit launcher), 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_from_env() -> int:
    """This process's rank among them (``RANK``), 0 for a plain run."""
    return int(os.environ.get("RANK", "0"))


def local_rank_from_env() -> int:
    """This process's rank on its node (``LOCAL_RANK``): the GPU it uses; 0 for a plain run."""
    return int(os.environ.get("LOCAL_RANK", "0"))
