"""CUB-200-2011 (Wah et al. 2011): 11,788 bird images, 200 species, official train/test split."""

import os

import numpy as np
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.evaluation.datasets.labelled_images import LabelledImages
from vise_plugin.evaluation.datasets.splits import fold_with_val
from vise_plugin.registry import BENCHMARK_DATASETS


def _read_pairs(path: str):
    if not g_pathmgr.exists(path):
        raise InputError(
            f"{path}: not found (CUB-200-2011 layout: images.txt, image_class_labels.txt, "
            "train_test_split.txt, classes.txt, images/)"
        )
    pairs = {}
    with g_pathmgr.open(path, "r") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit():
                raise InputError(f"{path}:{line_no}: expected '<id> <value>', found {line.strip()!r}")
            pairs[int(parts[0])] = parts[1].strip()
    return pairs


@BENCHMARK_DATASETS.register("cub")
def read_cub(root: str, val_fraction: float = 0.1, seed: int = 0, **_) -> LabelledImages:
    """The release's own files; val is a seeded share of train, top-1 is reported on test."""
    images = _read_pairs(os.path.join(root, "images.txt"))
    labels = _read_pairs(os.path.join(root, "image_class_labels.txt"))
    is_train = _read_pairs(os.path.join(root, "train_test_split.txt"))
    classes = _read_pairs(os.path.join(root, "classes.txt"))
    ids = sorted(images)
    missing = [i for i in ids if i not in labels or i not in is_train]
    if missing:
        raise InputError(f"{root}: image ids {missing[:3]} have no class or no train/test entry")
    targets = np.array([int(labels[i]) - 1 for i in ids], np.int64)
    train = np.array([k for k, i in enumerate(ids) if is_train[i] == "1"], np.int64)
    test = np.array([k for k, i in enumerate(ids) if is_train[i] != "1"], np.int64)
    return LabelledImages(
        "cub",
        root,
        [f"images/{images[i]}" for i in ids],
        targets,
        [classes[c] for c in sorted(classes)],
        [fold_with_val(train, test, val_fraction, seed, targets)],
        layout={
            "layout": "CUB_200_2011 release files",
            "train": "train_test_split.txt (is_training_image 1)",
            "val": f"{val_fraction:g} of train held out (seed {seed})",
            "test": "train_test_split.txt (is_training_image 0)",
        },
    )
