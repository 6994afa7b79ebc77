"""A web-tag list's images with their tags (EmotionNet-style supervision), as a dataset."""

import os
from typing import Any, Callable, Mapping, Optional

from vise_plugin.data.pretraining_images import PretrainingDataset, PretrainingImages, _image_settings
from vise_plugin.data.tag_table import TagTable
from vise_plugin.data.target_sources import WebTags
from vise_plugin.registry import register_dataset


class TaggedImages(PretrainingImages):
    """:class:`PretrainingImages` of a tag list: ``{"input", "target": {"tags": (K,)}}``, 1/n on each
    of the image's n tags (all zero for an image without tags, which the tag losses leave out).

    Args:
        table: the tag list and vocabulary.
        image_root: folder the table's relative paths start from.
        transform: PIL image -> tensor.
        skip_unreadable: give ``{"skipped": path}`` for an image that cannot be read.
    """

    def __init__(self, table: TagTable, image_root: str, transform: Callable, skip_unreadable: bool = False):
        super().__init__([WebTags(table, image_root)], transform, skip_unreadable=skip_unreadable)
        self.table = table


@register_dataset("web_tag_images")
class WebTagImagesDataset(PretrainingDataset):
    """classy-vision dataset over a tag list (see :class:`TaggedImages` for the items), for
    tags-only pretraining with classy-vision's trainer.

    Args:
        tag_list: ``.pkl`` (EmotionNet release) or ``.jsonl`` tag list.
        tag_vocab: vocabulary file, one tag per line.
        image_root: folder the list's relative paths start from; defaults to the list's folder.
        The other arguments are those of :class:`PretrainingDataset`.
    """

    def __init__(self, tag_list: str, tag_vocab: str, image_root: Optional[str] = None, **settings: Any):
        table = TagTable.read(tag_list, tag_vocab)
        super().__init__([WebTags(table, image_root or os.path.dirname(tag_list))], **settings)
        self.tags = table

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "WebTagImagesDataset":
        return cls(config["tag_list"], config["tag_vocab"], config.get("image_root"), **_image_settings(config))
