"""The pretraining dataset: images of a label store's posts with their VisE targets."""

import os
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
from classy_vision.dataset import ClassyDataset, register_dataset

from .bad_images import SKIPPED
from .images import blank_input, load_or_skip
from .label_store import LabelStore
from .tag_table import TagTable, tags_of
from .transforms import train_transform


class EngagementImages(torch.utils.data.Dataset):
    """Item ``i`` -> ``{"input": image tensor, "target": {"comments": (Kc,) float, "reactions": () int64}}``.

    The index may also be a pair ``(i, seed)`` (what :class:`ResumableBatchSampler` yields): the
    transform then draws its random numbers from ``seed``, so an item's crop does not depend on
    which worker reads it or on what that worker read before. With ``skip_unreadable``, an image
    that cannot be read gives ``{"skipped": path}`` instead of raising (see :func:`collate_readable`).
    With a :class:`TagTable`, ``target["tags"]`` is the post image's web tags as a ``(K,)``
    distribution (all zero when it has none), for training VisE and web tags together.

    ``target["comments"]`` is the normalised histogram of post ``i``'s comment clusters (all zero
    when it has none); ``target["reactions"]`` its reaction cluster (-1 when none).

    Args:
        store: an open :class:`LabelStore` (memory-mapped).
        image_root: folder the store's relative image paths start from.
        transform: PIL image (lazily decoded, see :func:`open_image`) -> tensor.
        indices: optional subset of store rows (e.g. the Fig. 4 data-size ablation).
    """

    def __init__(self, store: LabelStore, image_root: str, transform: Callable, indices: Optional[np.ndarray] = None,
                 skip_unreadable: bool = False, tags: Optional[TagTable] = None):
        self.store = store
        self.tags = tags
        self.skip_unreadable = skip_unreadable
        self.image_root = image_root
        self.transform = transform
        self.indices = np.arange(len(store)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        idx, seed = idx if isinstance(idx, tuple) else (idx, None)
        row = int(self.indices[idx])
        path = os.path.join(self.image_root, self.store.images[row])
        image = load_or_skip(path, self.transform, seed, self.skip_unreadable)
        if image is None:
            return {SKIPPED: path}
        return {
            "input": image,
            "target": {
                "comments": torch.from_numpy(self.store.comment_histogram(row)),
                "reactions": torch.tensor(int(self.store.reactions[row]), dtype=torch.int64),
                **tags_of(self.tags, self.store.images[row]),
            },
        }

    def placeholder_item(self) -> Dict[str, Any]:
        """An item of this dataset's shapes with nothing to learn: a black image, no comment
        cluster, no reaction cluster and no tag (every loss leaves it out)."""
        tags = {} if self.tags is None else {"tags": torch.zeros(self.tags.num_tags)}
        return {"input": blank_input(self.transform),
                "target": {"comments": torch.zeros(self.store.num_classes("comments")),
                           "reactions": torch.tensor(-1, dtype=torch.int64), **tags}}


def subset_indices(num_posts: int, subset: Optional[int], seed: int) -> Optional[np.ndarray]:
    """A sorted random ``subset`` of ``range(num_posts)`` drawn with ``seed``, or None for all posts."""
    if subset is None or subset >= num_posts:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_posts, size=subset, replace=False))


@register_dataset("vise_engagement")
class VisEEngagementDataset(ClassyDataset):
    """classy-vision dataset over a label store (see :class:`EngagementImages` for the items).

    Args:
        labels: label store folder.
        image_root: folder of the images; defaults to the store's ``image_root`` from meta.json.
        batchsize_per_replica: images per rank and step.
        image_size, crop_scale_min: random-resized-crop settings.
        subset: train on this many randomly chosen posts (None: all), drawn with ``seed``.
        shuffle: reshuffle every epoch.
        tag_list, tag_vocab: a web-tag list and its vocabulary (see :class:`TagTable`); items then
            also carry ``target["tags"]``, matched to the store's image paths, for VisE + web tags.
    """

    def __init__(
        self,
        labels: str,
        image_root: Optional[str] = None,
        batchsize_per_replica: int = 64,
        image_size: int = 224,
        crop_scale_min: float = 0.08,
        subset: Optional[int] = None,
        seed: int = 0,
        shuffle: bool = True,
        tag_list: Optional[str] = None,
        tag_vocab: Optional[str] = None,
    ):
        store = LabelStore(labels)
        root = image_root or store.meta.get("image_root", "")
        if bool(tag_list) != bool(tag_vocab):
            raise ValueError("VisEEngagementDataset: give tag_list and tag_vocab together")
        tags = TagTable.read(tag_list, tag_vocab) if tag_list else None
        images = EngagementImages(store, root, train_transform(image_size, crop_scale_min),
                                  subset_indices(len(store), subset, seed), tags=tags)
        super().__init__(images, batchsize_per_replica, shuffle, transform=None, num_samples=None)
        self.store = store
        self.tags = tags

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VisEEngagementDataset":
        return cls(
            labels=config["labels"],
            image_root=config.get("image_root"),
            batchsize_per_replica=config["batchsize_per_replica"],
            image_size=config.get("image_size", 224),
            crop_scale_min=config.get("crop_scale_min", 0.08),
            subset=config.get("subset"),
            seed=config.get("seed", 0),
            shuffle=config.get("shuffle", True),
            tag_list=config.get("tag_list"),
            tag_vocab=config.get("tag_vocab"),
        )
