"""The web-tag pretraining dataset: images of a tag list with their tags (EmotionNet-style supervision)."""

import os
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from classy_vision.dataset import ClassyDataset, register_dataset

from .bad_images import SKIPPED
from .images import blank_input, load_or_skip
from .tag_table import TagTable
from .transforms import train_transform


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

    def placeholder_item(self) -> Dict[str, Any]:
        """An item of this dataset's shapes with nothing to learn: a black image without tags."""
        return {"input": blank_input(self.transform), "target": {"tags": torch.zeros(self.table.num_tags)}}


@register_dataset("web_tag_images")
class WebTagImagesDataset(ClassyDataset):
    """classy-vision dataset over a tag list (see :class:`TaggedImages` for the items), for
    tags-only pretraining with classy-vision's trainer.

    Args:
        tag_list: ``.pkl`` (EmotionNet release) or ``.jsonl`` tag list.
        tag_vocab: vocabulary file, one tag per line.
        image_root: folder the list's relative paths start from; defaults to the list's folder.
        batchsize_per_replica: images per rank and step.
        image_size, crop_scale_min: random-resized-crop settings.
        shuffle: reshuffle every epoch.
    """

    def __init__(
        self,
        tag_list: str,
        tag_vocab: str,
        image_root: Optional[str] = None,
        batchsize_per_replica: int = 64,
        image_size: int = 224,
        crop_scale_min: float = 0.08,
        shuffle: bool = True,
    ):
        table = TagTable.read(tag_list, tag_vocab)
        root = image_root or os.path.dirname(tag_list)
        images = TaggedImages(table, root, train_transform(image_size, crop_scale_min))
        super().__init__(images, batchsize_per_replica, shuffle, transform=None, num_samples=None)
        self.tags = table

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "WebTagImagesDataset":
        return cls(
            tag_list=config["tag_list"],
            tag_vocab=config["tag_vocab"],
            image_root=config.get("image_root"),
            batchsize_per_replica=config["batchsize_per_replica"],
            image_size=config.get("image_size", 224),
            crop_scale_min=config.get("crop_scale_min", 0.08),
            shuffle=config.get("shuffle", True),
        )
