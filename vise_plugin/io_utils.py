"""Writing files so that a reader never sees half of one: a temporary name, flushed, then renamed."""

import hashlib
import os
from typing import Any

import torch
from iopath.common.file_io import g_pathmgr


def replace_file(tmp: str, path: str) -> None:
    """Moves ``tmp`` to ``path``; an atomic rename on local disk."""
    if "://" in path and g_pathmgr.exists(path):
        g_pathmgr.rm(path)
    move(tmp, path)


def torch_save_atomic(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` (any iopath location) through ``<path>.tmp``, synced before the rename."""
    tmp = path + ".tmp"
    with g_pathmgr.open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        if hasattr(f, "fileno"):
            os.fsync(f.fileno())
    replace_file(tmp, path)


def copy_atomic(src: str, path: str) -> None:
    """Copies ``src`` to ``path`` through ``<path>.tmp``."""
    tmp = path + ".tmp"
    g_pathmgr.copy(src, tmp, overwrite=True)
    replace_file(tmp, path)


def move(src: str, dst: str) -> None:
    """Moves ``src`` to ``dst`` (any iopath locations); ``OSError`` when it did not happen (iopath's
    ``mv`` only logs)."""
    if "://" not in src and "://" not in dst:
        os.replace(src, dst)
    elif not g_pathmgr.mv(src, dst):
        raise OSError(f"cannot move {src} to {dst}")


def file_sha256(path: str, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
