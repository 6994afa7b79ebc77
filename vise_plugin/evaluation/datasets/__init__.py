"""Benchmark datasets in their published layouts, each reader registered in
:data:`vise_plugin.registry.BENCHMARK_DATASETS` by the name ``config.benchmark.dataset.name`` takes."""

import os
from typing import Any, Callable

from vise_plugin.errors import ConfigError
from vise_plugin.evaluation.datasets.cub import read_cub
from vise_plugin.evaluation.datasets.generic import (
    read_csv_list,
    read_image_folder,
    read_pickle_list,
)
from vise_plugin.evaluation.datasets.hateful_memes import read_hateful_memes
from vise_plugin.evaluation.datasets.labelled_images import (
    SPLITS,
    ImageListDataset,
    LabelledImages,
)
from vise_plugin.evaluation.datasets.politics import read_politics
from vise_plugin.evaluation.datasets.splits import fold_with_val, hold_out, random_split
from vise_plugin.evaluation.datasets.unbiased_emotion import read_unbiased_emotion
from vise_plugin.registry import BENCHMARK_DATASETS


def check_benchmark_dataset(name: str, root: str) -> Callable[..., LabelledImages]:
    """The reader registered as ``name``; unknown names and missing folders fail in one line naming the
    config key (what a benchmark checks before anything is written or queued)."""
    reader = BENCHMARK_DATASETS.get(name, "config.benchmark.dataset.name")
    if not root:
        raise ConfigError(f"no dataset folder: set config.benchmark.dataset.root=<{name} folder>")
    if "://" not in root and not os.path.isdir(root):
        raise ConfigError(
            f"{name} dataset folder not found: {root}; set config.benchmark.data_root=<folder holding "
            f"{os.path.basename(root.rstrip('/'))}> or config.benchmark.dataset.root=<folder>"
        )
    return reader


def read_benchmark_dataset(name: str, root: str, **options: Any) -> LabelledImages:
    """The reader registered in :data:`vise_plugin.registry.BENCHMARK_DATASETS` as ``name``, on ``root``;
    unknown names and missing folders fail naming the config key."""
    reader = check_benchmark_dataset(name, root)
    data = reader(root, **options)
    data.check_files()
    return data


__all__ = [
    "check_benchmark_dataset",
    "read_benchmark_dataset",
    "LabelledImages",
    "ImageListDataset",
    "SPLITS",
    "random_split",
    "hold_out",
    "fold_with_val",
    "read_cub",
    "read_csv_list",
    "read_image_folder",
    "read_pickle_list",
    "read_hateful_memes",
    "read_politics",
    "read_unbiased_emotion",
]
