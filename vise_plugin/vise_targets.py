"""VisE's targets for images of your own dataset, looked up by path in a label store: the part of the
project another training loop needs besides [`VisEMultiHead`][vise_plugin.VisEMultiHead] and
[`VisELoss`][vise_plugin.VisELoss].

```python
targets = VisETargets.open("/data/labels")  # image root and tasks from the store itself
head = VisEMultiHead(512, tasks=targets.tasks)  # {"comments": Kc, "reactions": Kr}
batch_targets = targets.batch(paths)  # {"comments": (B, Kc) float32, "reactions": (B,) int64}
loss = VisELoss()(head(features), batch_targets)
```
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import default_collate

from vise_plugin.data.target_sources import EngagementLabels, relative_image_path
from vise_plugin.errors import InputError
from vise_plugin.labels.store import LabelStore

__all__ = ["VisETargets", "collate_targets"]

MISSING_CHOICES = ("error", "empty")


def collate_targets(items: Sequence[Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Stacks the targets of single images into a batch's.

    Args:
        items: ``B`` dicts ``{task: tensor}`` with the same tasks, e.g. from
            [`VisETargets.for_path`][vise_plugin.VisETargets.for_path] (``comments`` ``(Kc,)`` float32,
            ``reactions`` ``()`` int64).

    Returns:
        ``{task: (B, ...) tensor}``: ``comments`` ``(B, Kc)`` float32, ``reactions`` ``(B,)`` int64.

    Raises:
        ValueError: ``items`` is empty or its dicts name different tasks.
    """
    if not items:
        raise ValueError("collate_targets: no targets to stack")
    tasks = list(items[0])
    for i, item in enumerate(items):
        if list(item) != tasks:
            raise ValueError(f"collate_targets: item {i} has the tasks {sorted(item)}, item 0 has {sorted(tasks)}")
    return {task: torch.stack([item[task] for item in items]) for task in tasks}


class VisETargets:
    """A label store's VisE targets, by image path.

    The label job (``vise-labels``) writes a store with one row per post: its image path, relative to
    the store's image root, its comment cluster histogram and its reaction cluster. This class gives those
    targets for the images of any dataset that can name its image files:

    - ``comments``: ``(Kc,)`` float32, the post's normalised comment-cluster histogram (all zero: no
      comment label; [`VisELoss`][vise_plugin.VisELoss] leaves the post out of that term);
    - ``reactions``: ``()`` int64, the post's reaction cluster (``-1``: no reactions; left out).

    Args:
        store: an open `vise_plugin.labels.store.LabelStore`.
        image_root: the folder the store's image paths are relative to
            ([`open`][vise_plugin.VisETargets.open] takes the store's own).
        comment_target: ``"histogram"`` (the paper's: clusters weighted by their comment counts) or
            ``"uniform"`` (equal weight on each distinct cluster of the post's comments).
        missing: what an image the store does not hold gets: ``"error"``, an
            `vise_plugin.errors.InputError` naming it, or ``"empty"``, targets with nothing to learn
            (all-zero ``comments``, ``reactions`` ``-1``), which [`VisELoss`][vise_plugin.VisELoss] leaves out.
            The label job leaves out posts without comments and reactions, and (by default) those it fitted
            the clusters on: use ``"empty"`` for a dataset that holds such images, after
            [`check_paths`][vise_plugin.VisETargets.check_paths].
    """

    def __init__(self, store: LabelStore, image_root: str, comment_target: str = "histogram", missing: str = "error"):
        self._labels = EngagementLabels(store, image_root, comment_target)
        self.store = store
        self.image_root = image_root
        self.missing = _missing_choice(missing)

    @classmethod
    def open(
        cls, labels: str, image_root: Optional[str] = None, comment_target: str = "histogram", missing: str = "error"
    ) -> "VisETargets":
        """Opens the label store in folder ``labels`` (memory-mapped: cheap in every data-loader worker).

        Args:
            labels: the store's folder (``meta.json`` and the arrays the label job wrote); a local path or
                an iopath URL.
            image_root: the folder the store's image paths are relative to; None: the one the label job
                recorded (``image_root`` in ``meta.json``).
            comment_target: see the class.
            missing: see the class.
        """
        store = LabelStore(labels)
        root = store.meta.get("image_root", "") if image_root is None else image_root
        return cls(store, root, comment_target, missing)

    @property
    def tasks(self) -> Dict[str, int]:
        """``{task: number of classes}``: ``{"comments": Kc, "reactions": Kr}``, what
        [`VisEMultiHead`][vise_plugin.VisEMultiHead] takes as ``tasks``."""
        return {task: spec["num_classes"] for task, spec in self._labels.specs().items()}

    def __len__(self) -> int:
        """The number of posts (images) in the store."""
        return len(self.store)

    def path(self, row: int) -> str:
        """The image path of store row ``row``, relative to `image_root`."""
        return self._labels.path(row)

    def has(self, path: str) -> bool:
        """Whether the store holds image ``path`` (absolute, or relative to `image_root`)."""
        return self._labels.row_of(path) is not None

    def for_path(self, path: str, missing: Optional[str] = None) -> Dict[str, torch.Tensor]:
        """The targets of one image.

        Args:
            path: the image's path, absolute or relative to `image_root` (``./a//b.jpg`` is ``a/b.jpg``).
            missing: ``"error"`` or ``"empty"`` (see the class); None: the one given to the constructor.

        Returns:
            ``{"comments": (Kc,) float32, "reactions": () int64}``.
        """
        missing = _missing_choice(missing or self.missing)
        row = self._labels.row_of(path)
        if row is not None:
            return self._labels.targets_at(row)
        if missing == "empty":
            return self._labels.empty()
        raise InputError(self._not_held(path))

    def batch(self, paths: Sequence[str], missing: Optional[str] = None) -> Dict[str, torch.Tensor]:
        """The stacked targets of a batch of images.

        Args:
            paths: ``B`` image paths, absolute or relative to `image_root`.
            missing: as in [`for_path`][vise_plugin.VisETargets.for_path]; with ``"error"`` the error names
                every path of the batch the store does not hold (up to five, and how many).

        Returns:
            ``{"comments": (B, Kc) float32, "reactions": (B,) int64}``.
        """
        missing = _missing_choice(missing or self.missing)
        rows = [self._labels.row_of(p) for p in paths]
        unknown = [p for p, row in zip(paths, rows) if row is None]
        if unknown and missing == "error":
            raise InputError(self._not_held(*unknown))
        return collate_targets([self._labels.empty() if row is None else self._labels.targets_at(row) for row in rows])

    def check_paths(self, paths: Sequence[str], min_fraction: float = 1.0) -> float:
        """Checks, before training, that the store holds enough of a dataset's images.

        Args:
            paths: the dataset's image paths (absolute or relative to `image_root`).
            min_fraction: the share of ``paths`` the store must hold, in ``[0, 1]``.

        Returns:
            The share of ``paths`` the store holds.

        Raises:
            InputError: one line: how many of the paths the store does not hold, five of them, and the
                image root they were looked up under.
        """
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError(f"check_paths: min_fraction={min_fraction} is not in [0, 1]")
        if not paths:
            raise InputError("check_paths: no image paths given")
        unknown = [p for p in paths if not self.has(p)]
        held = 1.0 - len(unknown) / len(paths)
        if held < min_fraction:
            raise InputError(
                f"{self._not_held(*unknown, of=len(paths))}; at least {min_fraction:.0%} must be "
                "(check_paths(min_fraction=...))"
            )
        return held

    def collate(self, items: Sequence[Sequence[Any]]) -> List[Any]:
        """A ``collate_fn`` for a `torch.utils.data.DataLoader` whose items end with the image's
        path, e.g. ``(image, path)`` or lightly's ``(views, label, filename)``: the other fields are
        collated by torch's ``default_collate`` and the paths are replaced by their targets from
        [`batch`][vise_plugin.VisETargets.batch] (an image the store does not hold: as the constructor's
        ``missing`` says).

        Args:
            items: ``B`` tuples (or lists) whose last element is a path string.

        Returns:
            A list: the collated fields, then the ``{"comments": (B, Kc), "reactions": (B,)}`` targets.
        """
        if not items or not all(isinstance(item[-1], str) for item in items):
            raise ValueError("VisETargets.collate: every item must end with its image path (a str)")
        fields = default_collate([tuple(item[:-1]) for item in items])
        return [*fields, self.batch([item[-1] for item in items])]

    def _not_held(self, *unknown: str, of: Optional[int] = None) -> str:
        examples = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        count = f"{len(unknown):,} of {of:,}" if of is not None else f"{len(unknown):,}"
        first = relative_image_path(unknown[0], self.image_root)
        return (
            f"{self.store.folder}: {count} image path(s) not in the label store ({examples}; looked up as "
            f"{first!r} under image root {self.image_root or '(none)'!r}); the label job leaves out posts "
            "without comments or reactions and, unless config.labels.label_fit_subset=true, those it fitted "
            "the clusters on: VisETargets(..., missing='empty') gives such images targets with nothing to learn"
        )


def _missing_choice(missing: str) -> str:
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing={missing!r}: use one of {', '.join(MISSING_CHOICES)}")
    return missing
