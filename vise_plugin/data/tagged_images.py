"""The web-tag pretraining dataset: images of a tag list with their tags (EmotionNet-style supervision)."""

import os
from typing import Any, Callable, Dict, Tuple, Union

import torch

from .bad_images import SKIPPED
from .images import load_or_skip
from .tag_table import TagTable


class TaggedImages(torch.utils.data.Dataset):
    """Item ``i`` -> ``{"input": image tensor, "target": {"tags": (K,) float}}``.

    ``target["tags"]`` spreads 1 evenly over the image's tags (all zero for an image without tags,
    which the tag losses leave out). Indices may be ``(i, seed)`` pairs and unreadable images may be
    skipped, as in :class:`EngagementImages`.

    Args:
        table: the tag list and vocabulary.
        image_root: folder the table's relative paths start from.
        transform: PIL image -> tensor.
        skip_unreadable: give ``{"skipped": path}`` for an image that cannot be read.
    """

    def __init__(self, table: TagTable, image_root: str, transform: Callable, skip_unreadable: bool = False):
        self.table = table
        self.image_root = image_root
        self.transform = transform
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        idx, seed = idx if isinstance(idx, tuple) else (idx, None)
        rel = self.table.paths[idx]
        path = os.path.join(self.image_root, rel)
        image = load_or_skip(path, self.transform, seed, self.skip_unreadable)
        if image is None:
            return {SKIPPED: path}
        return {"input": image, "target": {"tags": self.table.target(rel)}}
