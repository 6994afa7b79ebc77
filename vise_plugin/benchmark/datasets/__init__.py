import os
from typing import Any, Callable, Dict

from ...errors import ConfigError
from .cub import read_cub
from .generic import read_csv_list, read_image_folder, read_pickle_list
from .hateful_memes import read_hateful_memes
from .labelled_images import SPLITS, ImageListDataset, LabelledImages
from .politics import read_politics
from .splits import fold_with_val, hold_out, random_split
from .unbiased_emotion import read_unbiased_emotion

DATASET_READERS: Dict[str, Callable[..., LabelledImages]] = {
    "unbiased_emotion": read_unbiased_emotion,
    "politics": read_politics,
    "hateful_memes": read_hateful_memes,
    "cub": read_cub,
    "image_folder": read_image_folder,
    "csv": read_csv_list,
    "pickle": read_pickle_list,
}


def read_benchmark_dataset(name: str, root: str, **options: Any) -> LabelledImages:
    """The reader ``DATASET_READERS[name]`` on ``root``; unknown names fail naming the config key."""
    if name not in DATASET_READERS:
        raise ConfigError(f"config.benchmark.dataset.name={name!r}: use one of {sorted(DATASET_READERS)}")
    if not root:
        raise ConfigError(f"no dataset folder: set config.benchmark.dataset.root=<{name} folder>")
    if "://" not in root and not os.path.isdir(root):
        raise ConfigError(f"{name} dataset folder not found: {root}; set config.benchmark.data_root=<folder holding "
                          f"{os.path.basename(root.rstrip('/'))}> or config.benchmark.dataset.root=<folder>")
    data = DATASET_READERS[name](root, **options)
    data.check_files()
    return data


__all__ = ["DATASET_READERS", "read_benchmark_dataset", "LabelledImages", "ImageListDataset", "SPLITS",
           "random_split", "hold_out", "fold_with_val", "read_cub", "read_csv_list", "read_image_folder",
           "read_pickle_list", "read_hateful_memes", "read_politics", "read_unbiased_emotion"]
