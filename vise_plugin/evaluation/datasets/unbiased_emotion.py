"""UnbiasedEmotion (Panda et al. 2018): 3,045 images, 6 emotions, no official split."""

import os
from typing import Sequence

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS

from vise_plugin.errors import InputError
from vise_plugin.evaluation.datasets.labelled_images import LabelledImages
from vise_plugin.evaluation.datasets.splits import random_split
from vise_plugin.registry import BENCHMARK_DATASETS


@BENCHMARK_DATASETS.register("unbiased_emotion")
def read_unbiased_emotion(
    root: str, split_fractions: Sequence[float] = (0.7, 0.1, 0.2), split_seeds: Sequence[int] = (0, 1, 2, 3, 4), **_
) -> LabelledImages:
    """``root/images/<emotion>/[<object>/]<image>``; one random train/val/test split per seed (Sec. 4.3)."""
    images = os.path.join(root, "images")
    if not os.path.isdir(images):
        raise InputError(f"{root}: UnbiasedEmotion layout needs images/<emotion>/... (e.g. images/joy/dog/1.jpg)")
    classes = sorted(d for d in os.listdir(images) if os.path.isdir(os.path.join(images, d)))
    paths, targets = [], []
    for label, emotion in enumerate(classes):
        for folder, _, files in sorted(os.walk(os.path.join(images, emotion))):
            for name in sorted(files):
                if name.lower().endswith(IMG_EXTENSIONS):
                    paths.append(os.path.relpath(os.path.join(folder, name), root))
                    targets.append(label)
    if len(classes) < 2 or not paths:
        raise InputError(f"{images}: found {len(classes)} emotion folders and {len(paths)} images")
    folds = []
    for seed in split_seeds:
        train, val, test = random_split(len(paths), split_fractions, seed)
        folds.append({"train": train, "val": val, "test": test})
    return LabelledImages(
        "unbiased_emotion",
        root,
        paths,
        np.array(targets, np.int64),
        classes,
        folds,
        layout={
            "layout": "images/<emotion>/...",
            "splits": f"random {list(split_fractions)}, seeds {list(split_seeds)}",
        },
    )
