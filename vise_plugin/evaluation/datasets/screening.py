"""Finding the images of a benchmark that cannot be decoded, before any feature or gradient depends on them."""

import logging
from typing import List

import numpy as np
import torch
from tqdm import tqdm

from vise_plugin.data.bad_images import over_budget
from vise_plugin.data.images import open_image
from vise_plugin.errors import InputError
from vise_plugin.evaluation.datasets.labelled_images import LabelledImages
from vise_plugin.evaluation.loader_workers import loader_workers

logger = logging.getLogger(__name__)

_PROBE_SIZE = (16, 16)  # a JPEG is then decoded at 1/8 scale: every block is still read


class _Decodable(torch.utils.data.Dataset):
    def __init__(self, data: LabelledImages):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.paths)

    def __getitem__(self, i: int) -> bool:
        try:
            with open_image(f"{self.data.root}/{self.data.paths[i]}") as image:
                image.draft("RGB", _PROBE_SIZE)
                image.load()
            return True
        except InputError:
            return False


def unreadable_images(data: LabelledImages, num_workers: int = 0) -> List[int]:
    """Indices of the images of ``data`` that cannot be opened and decoded (a reduced-scale decode)."""
    loader = torch.utils.data.DataLoader(
        _Decodable(data), batch_size=64, num_workers=loader_workers(num_workers), collate_fn=list
    )
    ok = [
        flag for batch in tqdm(loader, desc=f"{data.name} images", unit="batch", dynamic_ncols=True) for flag in batch
    ]
    return [i for i, flag in enumerate(ok) if not flag]


def drop_unreadable(data: LabelledImages, max_fraction: float, num_workers: int = 0) -> LabelledImages:
    """``data`` without its unreadable images, each logged with its path; raises :class:`InputError`
    when more than ``max_fraction`` of them are unreadable (``config.data.max_bad_image_fraction``)."""
    bad = unreadable_images(data, num_workers)
    if not bad:
        return data
    for i in bad:
        logger.warning("skipped unreadable image %s/%s", data.root, data.paths[i])
    if len(bad) > max_fraction * len(data.paths):
        raise InputError(
            f"{data.root}: {len(bad)} of {len(data.paths)} {data.name} images could not be read "
            f"{over_budget(len(bad), len(data.paths), max_fraction)}, e.g. {data.paths[bad[0]]}"
        )
    logger.warning("%s: skipped %d unreadable image(s) of %d", data.name, len(bad), len(data.paths))
    return data.subset(np.setdiff1d(np.arange(len(data.paths)), bad))
