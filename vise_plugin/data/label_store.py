"""The label store: a folder of memory-mapped arrays, one row per pretraining post.

Layout (format version 1)::

    meta.json              {"format_version", "num_posts", "tasks": {"comments": {"k": ..}, ..}, ..}
    comment_offsets.npy    int64 (N + 1,)   post i's pairs are comment_labels[off[i]:off[i+1]]
    comment_labels.npy     int32 (M, 2)     (cluster id, count) pairs
    reactions.npy          int32 (N,)       reaction cluster id, -1 for a post without reactions
    images.bin / image_offsets.npy          UTF-8 image paths, relative to the image root
    ids.bin / id_offsets.npy                UTF-8 post ids

Opened with ``mmap_mode="r"``, so every data-loader worker of every rank shares one copy
through the page cache.
"""

import json
import os
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from iopath.common.file_io import g_pathmgr

from ..errors import InputError

FORMAT_VERSION = 1


class StringColumn:
    """Read-only list of strings stored as one UTF-8 blob plus ``(N + 1,)`` int64 offsets."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray):
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return bytes(self.blob[self.offsets[i] : self.offsets[i + 1]]).decode("utf-8")

    @staticmethod
    def encode(values: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        encoded = [v.encode("utf-8") for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _load_blob(path: str) -> np.ndarray:
    # np.memmap refuses empty files
    return np.memmap(path, np.uint8, "r") if os.path.getsize(path) else np.zeros(0, np.uint8)


class LabelStore:
    """Random access to a label store folder (see module docstring)."""

    def __init__(self, folder: str):
        local = g_pathmgr.get_local_path(folder) if g_pathmgr.exists(folder) else folder
        meta_path = os.path.join(local, "meta.json")
        if not os.path.exists(meta_path):
            raise InputError(f"{folder}: not a label store (no meta.json); generate one with tools/generate_labels.py")
        with open(meta_path) as f:
            self.meta: Dict[str, Any] = json.load(f)
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{meta_path}: label store format {self.meta.get('format_version')} is not {FORMAT_VERSION}")
        self.folder = folder

        def load(name):
            return np.load(os.path.join(local, name), mmap_mode="r")

        self.comment_offsets = load("comment_offsets.npy")
        self.comment_labels = load("comment_labels.npy")
        self.reactions = load("reactions.npy")
        self.images = StringColumn(_load_blob(os.path.join(local, "images.bin")), load("image_offsets.npy"))
        self.ids = StringColumn(_load_blob(os.path.join(local, "ids.bin")), load("id_offsets.npy"))

    def __len__(self) -> int:
        return int(self.meta["num_posts"])

    def __getstate__(self):
        # Data-loader workers started with "spawn" reopen the memory maps instead of copying arrays.
        return {"folder": self.folder}

    def __setstate__(self, state):
        self.__init__(state["folder"])

    def num_classes(self, task: str) -> int:
        if task not in self.meta["tasks"]:
            raise InputError(f"{self.folder}: the label store has no {task!r} labels (it has {sorted(self.meta['tasks'])})")
        return int(self.meta["tasks"][task]["k"])

    def comment_pairs(self, i: int) -> np.ndarray:
        """``(n_i, 2)`` int32 (cluster id, count) pairs of post ``i``; ``n_i`` may be 0."""
        return np.asarray(self.comment_labels[self.comment_offsets[i] : self.comment_offsets[i + 1]])

    def comment_histogram(self, i: int) -> np.ndarray:
        """``(K_comments,)`` float32 normalised histogram, all zero for a post without comment labels."""
        hist = np.zeros(self.num_classes("comments"), dtype=np.float32)
        pairs = self.comment_pairs(i)
        if len(pairs):
            hist[pairs[:, 0]] = pairs[:, 1]
            hist /= hist.sum()
        return hist


def write_label_store(
    folder: str,
    ids: Sequence[str],
    images: Sequence[str],
    comment_pairs: List[np.ndarray],
    reactions: np.ndarray,
    meta: Dict[str, Any],
    model_dir: Optional[str] = None,
) -> None:
    """Writes a complete store into ``folder`` atomically (a temporary folder renamed at the end).

    ``comment_pairs[i]`` is an ``(n_i, 2)`` int array of (cluster id, count) for post ``i``;
    ``model_dir``, if given, is moved into the store as ``model/``.
    """
    n = len(ids)
    if not (len(images) == len(comment_pairs) == len(reactions) == n):
        raise ValueError("label store columns differ in length")
    tmp = folder.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(p) for p in comment_pairs], out=offsets[1:])
    labels = np.concatenate(comment_pairs).astype(np.int32) if offsets[-1] else np.zeros((0, 2), np.int32)
    np.save(os.path.join(tmp, "comment_offsets.npy"), offsets)
    np.save(os.path.join(tmp, "comment_labels.npy"), labels.reshape(-1, 2))
    np.save(os.path.join(tmp, "reactions.npy"), np.asarray(reactions, dtype=np.int32))
    for name, column in (("images", images), ("ids", ids)):
        blob, offs = StringColumn.encode(column)
        blob.tofile(os.path.join(tmp, f"{name}.bin"))
        np.save(os.path.join(tmp, f"{name[:-1]}_offsets.npy"), offs)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump({**meta, "format_version": FORMAT_VERSION, "num_posts": n}, f, indent=2, sort_keys=True)
    if model_dir is not None:
        shutil.move(model_dir, os.path.join(tmp, "model"))
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.replace(tmp, folder)
