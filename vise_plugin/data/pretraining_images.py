"""The pretraining dataset: images of the first target source with the targets of every source."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from classy_vision.dataset import ClassyDataset

from vise_plugin.data.bad_images import SKIPPED, collate_readable
from vise_plugin.data.device_decode import training_pipeline, with_file_name
from vise_plugin.data.images import blank_input, cpu_seed, load_or_skip
from vise_plugin.data.target_sources import TargetSource, build_target_sources, check_target_sources, empty_targets
from vise_plugin.errors import InputError
from vise_plugin.registry import register_dataset


class PretrainingImages(torch.utils.data.Dataset):
    """Item ``i`` -> ``{"input": (3, S, S) image, "target": {name: tensor}}``.

    The first source lists the images (row ``indices[i]``); every other source adds its targets for
    the same image path (e.g. web tags matched to the label store's posts). The index may also be a
    pair ``(i, seed)`` (what :class:`ResumableBatchSampler` yields): the transform then draws its
    random numbers from ``seed``, so an item's crop does not depend on which worker reads it. With
    ``skip_unreadable``, an image that cannot be read gives ``{"skipped": path}`` instead of raising
    (see :func:`collate_readable`).

    Args:
        sources: :class:`TargetSource` objects; the first lists the images.
        transform: PIL image (lazily decoded, see :func:`open_image`) -> tensor.
        indices: optional subset of the first source's rows (e.g. the Fig. 4 data-size ablation).
        skip_unreadable: skip unreadable images instead of raising.
        collate: how a batch of its items is built (default :func:`collate_readable`;
            :func:`training_pipeline` gives the one that goes with ``transform``).
    """

    def __init__(
        self,
        sources: Sequence[TargetSource],
        transform: Callable,
        indices: Optional[np.ndarray] = None,
        skip_unreadable: bool = False,
        collate: Callable = collate_readable,
    ):
        if not sources:
            raise ValueError("PretrainingImages needs at least one target source")
        self.sources = list(sources)
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.collate = collate
        self.indices = np.arange(len(self.sources[0])) if indices is None else np.asarray(indices)

    @property
    def image_root(self) -> str:
        return self.sources[0].image_root

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        idx, seed = idx if isinstance(idx, tuple) else (idx, None)
        row = int(self.indices[idx])
        first = self.sources[0]
        if hasattr(first, "read"):  # the source holds the image bytes (tar shards)
            path, data, target = first.where(row), None, None
            try:
                data, target = first.read(row)
            except InputError:
                if not self.skip_unreadable:
                    raise
                return {SKIPPED: path}
        else:
            path, data, target = os.path.join(self.image_root, first.path(row)), None, None
        image = load_or_skip(path, self.transform, seed, self.skip_unreadable, data)
        if image is None:
            return {SKIPPED: path}
        target = first.targets_at(row) if target is None else target
        if len(self.sources) > 1:
            rel = first.path(row)
            for source in self.sources[1:]:
                target.update(source.targets_for(rel))
        return {"input": with_file_name(image, path), "target": target}

    def placeholder_item(self) -> Dict[str, Any]:
        """An item of this dataset's shapes with nothing to learn: a black image and every source's
        empty targets (every loss leaves it out)."""
        return {"input": blank_input(self.transform), "target": empty_targets(self.sources)}

    def target_specs(self) -> Dict[str, Dict[str, Any]]:
        """``{target name: {"num_classes": K, ...}}`` of every source, for the heads and losses."""
        specs: Dict[str, Dict[str, Any]] = {}
        for source in self.sources:
            specs.update(source.specs())
        return specs

    def describe(self) -> str:
        return " + ".join(s.describe() for s in self.sources)

    @property
    def groups(self) -> Optional[List[int]]:
        """Items per file of the first source when it reads from a few large files (tar shards) and no
        subset is drawn: the sampler then keeps each epoch's reads grouped by file."""
        groups = getattr(self.sources[0], "groups", None)
        return groups if groups is not None and len(self.indices) == len(self.sources[0]) else None


class SeededItems(torch.utils.data.Dataset):
    """Any map-style dataset read with ``(index, seed)`` pairs: each item is drawn under
    :func:`cpu_seed` (the global random state is left as it was), so a dataset written
    for classy-vision also gets the resumable sampler's per-item augmentation seeds."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: Union[int, Tuple[int, int]]) -> Any:
        if not isinstance(idx, tuple):
            return self.dataset[idx]
        with cpu_seed(idx[1]):
            return self.dataset[idx[0]]


def subset_indices(num_posts: int, subset: Optional[int], seed: int) -> Optional[np.ndarray]:
    """A sorted random ``subset`` of ``range(num_posts)`` drawn with ``seed``, or None for all posts."""
    if subset is None or subset >= num_posts:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_posts, size=subset, replace=False))


@register_dataset("pretraining_images")
class PretrainingDataset(ClassyDataset):
    """classy-vision dataset over target sources (see :class:`PretrainingImages` for the items); the
    runner's default ``config.data.dataset``.

    Args:
        sources: built :class:`TargetSource` objects; the first lists the images.
        batchsize_per_replica: images per rank and step.
        image_size, crop_scale_min: random-resized-crop settings.
        subset: train on this many randomly chosen images (None: all), drawn with ``seed``.
        shuffle: reshuffle every epoch (classy-vision's own iterator).
        skip_unreadable: skip unreadable images (the runner's trainer counts them).
        decode_on: ``loader`` (decode and augment in the data-loader workers) or ``device`` (the workers
            read the bytes and draw the crop; :class:`DeviceDecode` does the rest on the training device).

    From a config: ``sources`` (entries of :data:`TARGET_SOURCES`), ``data`` (``config.data``, whose
    keys fill in what the entries leave out) and ``run_dir``, plus the arguments above.
    """

    def __init__(
        self,
        sources: Sequence[TargetSource],
        batchsize_per_replica: int = 64,
        image_size: int = 224,
        crop_scale_min: float = 0.08,
        subset: Optional[int] = None,
        seed: int = 0,
        shuffle: bool = True,
        skip_unreadable: bool = False,
        decode_on: str = "loader",
    ):
        transform, collate = training_pipeline(decode_on, image_size, crop_scale_min)
        images = PretrainingImages(
            sources, transform, subset_indices(len(sources[0]), subset, seed), skip_unreadable, collate
        )
        super().__init__(images, batchsize_per_replica, shuffle, transform=None, num_samples=None)

    @classmethod
    def check_inputs(cls, config: Mapping[str, Any]) -> None:
        """The inputs of its target sources, in one line each, before any work."""
        data = config.get("data") or {}
        check_target_sources(config.get("sources") or data.get("sources") or ["engagement_labels"], data)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PretrainingDataset":
        data = config.get("data") or {}
        sources = build_target_sources(
            config.get("sources") or data.get("sources") or ["engagement_labels"], data, config.get("run_dir", "")
        )
        return cls(sources, **_image_settings(config))


def _image_settings(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The keyword arguments every classy pretraining dataset shares, from its config."""
    return {
        "batchsize_per_replica": config["batchsize_per_replica"],
        "image_size": config.get("image_size", 224),
        "crop_scale_min": config.get("crop_scale_min", 0.08),
        "subset": config.get("subset"),
        "seed": config.get("seed", 0),
        "shuffle": config.get("shuffle", True),
        "skip_unreadable": config.get("skip_unreadable", False),
        "decode_on": config.get("decode_on", "loader"),
    }
