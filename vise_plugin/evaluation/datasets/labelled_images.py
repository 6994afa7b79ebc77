"""A benchmark dataset: every image once, with its label(s), and the folds that index into it."""

import posixpath
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.images import load_image
from vise_plugin.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass
class LabelledImages:
    """All images of a benchmark and its folds.

    Features are computed once per image; each fold names the indices of its ``train``, ``val``
    (model selection) and ``test`` (reported) parts.

    Attributes:
        name: dataset name (``cub``, ``csv``, ...).
        root: folder the ``paths`` are relative to.
        paths: ``N`` relative image paths.
        targets: ``(N,)`` int64 class ids, or ``(N, K)`` float32 multi-hot for a multi-label task.
        classes: ``K`` class names.
        folds: per fold ``{"train", "val", "test"} -> (n,) int64 indices``.
        metrics: metric names; the first one selects the model on val.
        texts: ``N`` strings for image + text tasks (Hateful Memes), else None.
        report_split: what the dataset calls the reported split (``test``, ``dev``).
    """

    name: str
    root: str
    paths: List[str]
    targets: np.ndarray
    classes: List[str]
    folds: List[Dict[str, np.ndarray]]
    metrics: Tuple[str, ...] = ("acc",)
    texts: Optional[List[str]] = None
    report_split: str = "test"
    layout: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.paths) != len(self.targets):
            raise ValueError(f"{self.name}: {len(self.paths)} paths but {len(self.targets)} targets")
        for i, fold in enumerate(self.folds):
            for split in SPLITS:
                if not len(fold.get(split, ())):
                    raise InputError(f"{self.root}: {self.name} fold {i} has no {split} images")
            self._check_disjoint(i, fold)

    def _check_disjoint(self, i: int, fold: Dict[str, np.ndarray]) -> None:
        """Model selection on reported images would go unnoticed: splits sharing an image fail in one line."""
        paths = {split: {posixpath.normpath(self.paths[j]) for j in fold[split]} for split in SPLITS}
        for a, b in (("val", "test"), ("train", "test"), ("train", "val")):
            shared = paths[a] & paths[b]
            if shared:
                raise InputError(
                    f"{self.root}: the {a} and {b} splits of {self.name}{f' fold {i}' if len(self.folds) > 1 else ''} "
                    f"share {len(shared)} image(s), e.g. {sorted(shared)[0]} ({a}: {self.source(a)}; {b}: "
                    f"{self.source(b)}); give each split its own images"
                )

    def source(self, split: str) -> str:
        """Where a split's images were listed (a file, a folder or how it was drawn), for logs and errors."""
        return self.layout.get(split, self.layout.get("splits", self.layout.get("layout", "?")))

    @property
    def multilabel(self) -> bool:
        return self.targets.ndim == 2

    def subset(self, keep: Sequence[int]) -> "LabelledImages":
        """Only the images ``keep`` (increasing indices), with every fold re-indexed and restricted to them."""
        keep = np.asarray(keep, dtype=np.int64)
        new_index = np.full(len(self.paths), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        folds = [{split: new_index[f[split]][new_index[f[split]] >= 0] for split in SPLITS} for f in self.folds]
        return replace(
            self,
            paths=[self.paths[i] for i in keep],
            targets=self.targets[keep],
            folds=folds,
            texts=None if self.texts is None else [self.texts[i] for i in keep],
        )

    def check_files(self, limit: int = 3) -> None:
        """One :class:`InputError` naming how many listed image files do not exist and up to ``limit``
        of them. Every path is checked, with one directory listing per folder rather than one look-up
        per file."""
        missing = missing_files(self.root, self.paths)
        if missing:
            raise InputError(
                f"{self.root}: {len(missing)} of {len(self.paths)} image files listed by the {self.name} "
                f"layout do not exist, e.g. {missing[:limit]}"
            )


def missing_files(root: str, paths: Sequence[str]) -> List[str]:
    """The ``paths`` (relative to ``root``, any iopath location) not found in their folder, in list order."""
    by_folder: Dict[str, List[str]] = {}
    for path in paths:
        folder, name = posixpath.split(path)
        by_folder.setdefault(folder, []).append(path)
    missing = set()
    for folder, members in by_folder.items():
        full = posixpath.join(root, folder) if folder else root
        names = set(g_pathmgr.ls(full)) if g_pathmgr.isdir(full) else set()
        missing.update(p for p in members if posixpath.basename(p) not in names)
    return [p for p in paths if p in missing]


class ImageListDataset(torch.utils.data.Dataset):
    """``(image (3, S, S), target, index)`` for the images ``indices`` of a :class:`LabelledImages`."""

    def __init__(self, data: LabelledImages, indices: Sequence[int], transform: Callable):
        self.data, self.indices, self.transform = data, np.asarray(indices, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        image = load_image(f"{self.data.root}/{self.data.paths[index]}", self.transform)
        return image, torch.as_tensor(self.data.targets[index]), index
