"""Politics (Thomas and Kovashka 2019): left/right leaning of news images, official train and test."""

import os

from vise_plugin.errors import InputError
from vise_plugin.evaluation.datasets.generic import assemble, read_csv
from vise_plugin.evaluation.datasets.labelled_images import LabelledImages
from vise_plugin.registry import BENCHMARK_DATASETS


@BENCHMARK_DATASETS.register("politics")
def read_politics(root: str, val_fraction: float = 0.1, seed: int = 0, **_) -> LabelledImages:
    """``root/train.csv`` and ``root/test.csv`` (header ``path,label``, label ``left`` or ``right``,
    paths relative to ``root``); val is a seeded 10% of train (Sec. 4.3), test is the official split."""
    entries, sources = {}, {}
    for split in ("train", "test"):
        path = os.path.join(root, f"{split}.csv")
        if not os.path.exists(path):
            raise InputError(f"{path}: not found (Politics layout: train.csv and test.csv with path,label)")
        entries[split], sources[split] = read_csv(path, ";"), path
    return assemble(
        "politics", root, entries, False, val_fraction, seed, {"layout": "train.csv / test.csv (path,label)", **sources}
    )
