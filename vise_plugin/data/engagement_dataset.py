"""A label store's posts with their VisE targets (and optionally web tags), as a dataset."""

from typing import Any, Callable, Mapping, Optional

import numpy as np

from vise_plugin.data.pretraining_images import PretrainingDataset, PretrainingImages, _image_settings
from vise_plugin.data.tag_table import TagTable
from vise_plugin.data.target_sources import EngagementLabels, WebTags, match_sources
from vise_plugin.labels.store import LabelStore
from vise_plugin.registry import register_dataset


class EngagementImages(PretrainingImages):
    """:class:`PretrainingImages` of a label store's posts: ``{"input", "target": {"comments": (Kc,),
    "reactions": ()}}``, plus ``target["tags"]`` ``(K,)`` with a :class:`TagTable` (web tags matched
    by image path, see :func:`match_sources`; all zero for a post without tags).

    Args:
        store: an open :class:`LabelStore` (memory-mapped).
        image_root: folder the store's relative image paths start from.
        transform: PIL image -> tensor.
        indices: optional subset of store rows.
        skip_unreadable: give ``{"skipped": path}`` for an image that cannot be read.
        tags: web tags to add, or None.
    """

    def __init__(
        self,
        store: LabelStore,
        image_root: str,
        transform: Callable,
        indices: Optional[np.ndarray] = None,
        skip_unreadable: bool = False,
        tags: Optional[TagTable] = None,
    ):
        sources = [EngagementLabels(store, image_root)] + ([WebTags(tags, image_root)] if tags is not None else [])
        match_sources(sources)
        super().__init__(sources, transform, indices, skip_unreadable)
        self.store = store


@register_dataset("vise_engagement")
class VisEEngagementDataset(PretrainingDataset):
    """classy-vision dataset over a label store (see :class:`EngagementImages` for the items).

    Args:
        labels: label store folder.
        image_root: folder of the images; defaults to the store's ``image_root`` from meta.json.
        tag_list, tag_vocab: a web-tag list and its vocabulary (see :class:`TagTable`); items then
            also carry ``target["tags"]``, matched to the store's image paths (see :func:`match_sources`),
            for VisE + web tags.
        The other arguments are those of :class:`PretrainingDataset`.
    """

    def __init__(
        self,
        labels: str,
        image_root: Optional[str] = None,
        tag_list: Optional[str] = None,
        tag_vocab: Optional[str] = None,
        **settings: Any,
    ):
        if bool(tag_list) != bool(tag_vocab):
            raise ValueError("VisEEngagementDataset: give tag_list and tag_vocab together")
        store = LabelStore(labels)
        root = image_root or store.meta.get("image_root", "")
        tags = TagTable.read(tag_list, tag_vocab) if tag_list else None
        sources = [EngagementLabels(store, root)] + ([WebTags(tags, root)] if tags else [])
        match_sources(sources)
        super().__init__(sources, **settings)
        self.store = store
        self.tags = tags

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "VisEEngagementDataset":
        return cls(
            config["labels"],
            config.get("image_root"),
            config.get("tag_list"),
            config.get("tag_vocab"),
            **_image_settings(config),
        )
