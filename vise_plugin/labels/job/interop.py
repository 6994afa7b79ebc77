"""VISSL / ClusterFit-style export: ``train_images.npy`` plus one ``train_<task>_labels.npy`` per task.

VISSL's ``disk_filelist`` data source reads an array of image paths and an array of integer
labels of the same length. Reactions give one label per post; for the multi-label comment task
the exported label is the post's most frequent comment cluster (the lowest id on a tie). Posts
without a label of a task get -1.
"""

import os
from typing import Sequence

import numpy as np

from vise_plugin.labels.store import LabelStore


def dominant_comment_clusters(store: LabelStore, start: int, end: int) -> np.ndarray:
    """``(end - start,)`` int64: each post's most frequent comment cluster, -1 for none."""
    offsets, pairs = store.comment_block(start, end)
    out = np.full(end - start, -1, np.int64)
    if len(pairs):
        owner = np.repeat(np.arange(end - start), np.diff(offsets))
        order = np.lexsort((pairs[:, 0], -pairs[:, 1], owner))  # per post: count desc, cluster asc
        owner_sorted = owner[order]
        first = np.r_[True, owner_sorted[1:] != owner_sorted[:-1]]
        out[owner_sorted[first]] = pairs[order[first], 0]
    return out


def export_clusterfit(stores: Sequence[LabelStore], image_root: str, folder: str, block: int = 1_000_000) -> None:
    """Writes the export of the concatenated ``stores`` into ``folder`` (paths joined to ``image_root``)."""
    os.makedirs(folder, exist_ok=True)
    total = sum(len(s) for s in stores)
    longest = 1
    for s in stores:
        if len(s):
            longest = max(longest, int(np.diff(np.asarray(s.images.offsets)).max()))
    width = len(os.path.join(image_root, "")) + longest  # paths are ASCII-or-wider; bytes bound characters
    images = np.lib.format.open_memmap(os.path.join(folder, "train_images.npy"), "w+", f"<U{width}", (total,))
    comments = np.lib.format.open_memmap(os.path.join(folder, "train_comments_labels.npy"), "w+", np.int64, (total,))
    reactions = np.lib.format.open_memmap(os.path.join(folder, "train_reactions_labels.npy"), "w+", np.int64, (total,))
    row = 0
    for s in stores:
        for start in range(0, len(s), block):
            end = min(start + block, len(s))
            images[row : row + end - start] = [os.path.join(image_root, s.images[i]) for i in range(start, end)]
            comments[row : row + end - start] = dominant_comment_clusters(s, start, end)
            reactions[row : row + end - start] = s.reactions[start:end]
            row += end - start
    for array in (images, comments, reactions):
        array.flush()
    del images, comments, reactions
