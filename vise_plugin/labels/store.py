"""The label store: a folder of memory-mapped arrays, one row per pretraining post.

Layout (format version 2)::

    meta.json              {"format_version", "num_posts", "tasks": {"comments": {"k": ..}, ..},
                            "fit_subset", "labeler" (checksums of encoder and centroids),
                            "sha256" (of every array file), "bad_records", ..}
    comment_offsets.npy    int64 (N + 1,)   post i's pairs are comment_labels[off[i]:off[i+1]]
    comment_labels.npy     int32 (M, 2)     (cluster id, count) pairs
    reactions.npy          int32 (N,)       reaction cluster id, -1 for a post without reactions
    images.bin / image_offsets.npy          UTF-8 image paths, relative to the image root
    ids.bin / id_offsets.npy                UTF-8 post ids
    model/                 the fitted encoder and centroids (relabel new posts with EngagementLabeler.load)
    report/                cluster size histograms (PNG) and clusters.md (top terms, example comments)
    interop/               optional VISSL/ClusterFit files: train_images.npy, train_<task>_labels.npy

Opened with ``mmap_mode="r"``, so every data-loader worker of every rank shares one copy
through the page cache.
"""

import json
import os
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.io_utils import file_sha256
from vise_plugin.labels.npy_appender import NpyAppender

FORMAT_VERSION = 2


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


def comment_histogram(pairs: Any, k: int, uniform: bool = False) -> np.ndarray:
    """``(k,)`` float32 normalised histogram of a post's ``(n, 2)`` ``(cluster, count)`` pairs (``uniform``:
    1/n on each of its n distinct clusters), all zero for a post without comment labels."""
    hist = np.zeros(k, dtype=np.float32)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        hist[pairs[:, 0]] = 1 if uniform else pairs[:, 1]
        hist /= hist.sum()
    return hist


class LabelStore:
    """Random access to a label store folder (see module docstring)."""

    def __init__(self, folder: str):
        local = g_pathmgr.get_local_path(folder) if g_pathmgr.exists(folder) else folder
        meta_path = os.path.join(local, "meta.json")
        if not os.path.exists(meta_path):
            raise InputError(
                f"{folder}: not a label store (no meta.json); generate one with vise-labels "
                "(tools/generate_labels.py in a clone)"
            )
        with open(meta_path) as f:
            self.meta: Dict[str, Any] = json.load(f)
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"{meta_path}: label store format {self.meta.get('format_version')} is not {FORMAT_VERSION}"
            )
        self.folder, self.local = folder, local

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
            raise InputError(
                f"{self.folder}: the label store has no {task!r} labels (it has {sorted(self.meta['tasks'])})"
            )
        return int(self.meta["tasks"][task]["k"])

    def comment_block(self, start: int, end: int) -> Tuple[np.ndarray, np.ndarray]:
        """Posts ``[start, end)``: their ``(n + 1,)`` int64 offsets and ``(M, 2)`` int32 (cluster id, count) pairs.

        Pair ``j`` belongs to the post whose range ``offsets[i] - offsets[0] <= j < offsets[i + 1] - offsets[0]``.
        """
        offsets = np.asarray(self.comment_offsets[start : end + 1])
        return offsets, np.asarray(self.comment_labels[offsets[0] : offsets[-1]])

    def comment_pairs(self, i: int) -> np.ndarray:
        """``(n_i, 2)`` int32 (cluster id, count) pairs of post ``i``; ``n_i`` may be 0."""
        return np.asarray(self.comment_labels[self.comment_offsets[i] : self.comment_offsets[i + 1]])

    def verify(self) -> None:
        """Recomputes the sha256 of every array file and raises :class:`InputError` on a mismatch."""
        for name, expected in sorted(self.meta.get("sha256", {}).items()):
            if file_sha256(os.path.join(self.local, name)) != expected:
                raise InputError(f"{self.folder}/{name}: sha256 differs from meta.json; the store is damaged")

    def comment_histogram(self, i: int, uniform: bool = False) -> np.ndarray:
        """``(K_comments,)`` float32 :func:`comment_histogram` of post ``i``."""
        return comment_histogram(self.comment_pairs(i), self.num_classes("comments"), uniform)


class LabelStoreWriter:
    """Streams rows into a new label store; nothing is held in memory beyond one appended block.

    Rows go to ``<folder>.tmp``; :meth:`close` writes meta.json (with the sha256 of every array
    file) and renames the folder into place, so a store folder is either complete or absent.
    """

    def __init__(self, folder: str):
        self.folder = folder.rstrip("/")
        self.tmp = self.folder + ".tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        path = lambda name: os.path.join(self.tmp, name)  # noqa: E731
        self._labels = NpyAppender(path("comment_labels.npy"), np.int32, (2,))
        self._reactions = NpyAppender(path("reactions.npy"), np.int32)
        self._offsets = {
            name: NpyAppender(path(f"{name}_offsets.npy"), np.int64) for name in ("comment", "image", "id")
        }
        self._blobs = {name: open(path(f"{name}s.bin"), "wb") for name in ("image", "id")}
        self._ends = {name: 0 for name in self._offsets}
        for appender in self._offsets.values():
            appender.append(np.zeros(1, np.int64))

    @property
    def num_posts(self) -> int:
        return self._reactions.rows

    def _append_offsets(self, name: str, lengths: np.ndarray) -> None:
        ends = self._ends[name] + np.cumsum(lengths, dtype=np.int64)
        self._offsets[name].append(ends)
        if len(ends):
            self._ends[name] = int(ends[-1])

    def _append_strings(self, name: str, values: Sequence[str]) -> None:
        blob, offsets = StringColumn.encode(values)
        self._blobs[name].write(blob.tobytes())
        self._append_offsets(name, np.diff(offsets))

    def append(
        self, ids: Sequence[str], images: Sequence[str], comment_pairs: Sequence[np.ndarray], reactions: np.ndarray
    ) -> None:
        """Appends posts; ``comment_pairs[i]`` is an ``(n_i, 2)`` int array of (cluster id, count)."""
        if not (len(images) == len(comment_pairs) == len(reactions) == len(ids)):
            raise ValueError("label store columns differ in length")
        counts = np.array([len(p) for p in comment_pairs], dtype=np.int64)
        labels = np.concatenate(comment_pairs) if counts.sum() else np.zeros((0, 2), np.int32)
        self._append_strings("id", ids)
        self._append_strings("image", images)
        self._append_offsets("comment", counts)
        self._labels.append(labels.reshape(-1, 2))
        self._reactions.append(np.asarray(reactions))

    def append_from(self, store: "LabelStore", start: int, end: int) -> None:
        """Copies rows ``[start, end)`` of another store, without decoding its strings."""
        offsets, pairs = store.comment_block(start, end)
        self._append_offsets("comment", np.diff(offsets))
        self._labels.append(pairs)
        self._reactions.append(np.asarray(store.reactions[start:end]))
        for name, column in (("id", store.ids), ("image", store.images)):
            offs = np.asarray(column.offsets[start : end + 1])
            self._blobs[name].write(np.asarray(column.blob[offs[0] : offs[-1]]).tobytes())
            self._append_offsets(name, np.diff(offs))

    def close(self, meta: Dict[str, Any], model_dir: Optional[str] = None) -> None:
        """Finishes the files, writes meta.json and moves the store into place.

        ``model_dir``, if given, is copied into the store as ``model/``.
        """
        for appender in (self._labels, self._reactions, *self._offsets.values()):
            appender.close()
        for blob in self._blobs.values():
            blob.close()
        files = {
            name: file_sha256(os.path.join(self.tmp, name))
            for name in sorted(os.listdir(self.tmp))
            if os.path.isfile(os.path.join(self.tmp, name))
        }
        if model_dir is not None:
            shutil.copytree(model_dir, os.path.join(self.tmp, "model"))
        meta = {**meta, "format_version": FORMAT_VERSION, "num_posts": self.num_posts, "sha256": files}
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.exists(self.folder):
            shutil.rmtree(self.folder)
        os.replace(self.tmp, self.folder)


def write_label_store(
    folder: str,
    ids: Sequence[str],
    images: Sequence[str],
    comment_pairs: List[np.ndarray],
    reactions: np.ndarray,
    meta: Dict[str, Any],
    model_dir: Optional[str] = None,
) -> None:
    """Writes a whole store in one call (see :class:`LabelStoreWriter`)."""
    writer = LabelStoreWriter(folder)
    writer.append(ids, images, comment_pairs, reactions)
    writer.close(meta, model_dir)
