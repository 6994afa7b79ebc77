"""Images that cannot be read: skipped and counted, until there are too many of them."""

import logging
from typing import Any, Callable, Dict, List, Mapping, Sequence

from torch.utils.data import default_collate

from vise_plugin.errors import InputError

logger = logging.getLogger(__name__)

SKIPPED = "skipped"


def over_budget(skipped: int, seen: int, max_fraction: float) -> str:
    """``"(2.50%, above the 1% allowed by config.data.max_bad_image_fraction)"``, for the errors that stop a run."""
    return (
        f"({100 * skipped / seen:.2f}%, above the {100 * max_fraction:g}% allowed by "
        "config.data.max_bad_image_fraction)"
    )


def collate_readable(items: Sequence[Dict[str, Any]], collate: Callable = default_collate) -> Dict[str, Any]:
    """``collate`` (default: ``default_collate``) of the items that were read; ``batch["skipped"]`` lists
    the paths of the others (items ``{"skipped": path}``). A batch with no readable item is ``{"skipped": [...]}``."""
    good = [item for item in items if SKIPPED not in item]
    batch = collate(good) if good else {}
    batch[SKIPPED] = [item[SKIPPED] for item in items if SKIPPED in item]
    return batch


def placeholder_batch(loader: Any) -> Dict[str, Any]:
    """The batch a rank whose whole batch was unreadable steps on (with weight 0) to stay in step with the
    other ranks: two of the ``placeholder_item()`` of ``loader``'s dataset (images of its shape with nothing
    to learn; one alone would break BatchNorm on a 1 x 1 map), collated as the loader's batches are (the
    dataset's ``collate``, else the loader's ``collate_fn``)."""
    dataset = getattr(loader, "dataset", None)
    item = getattr(dataset, "placeholder_item", None)
    if item is None:
        raise RuntimeError(
            "a rank's whole batch was unreadable and the dataset has no placeholder_item() to keep the ranks in step"
        )
    collate = getattr(dataset, "collate", None) or getattr(loader, "collate_fn", None) or default_collate
    return collate([item()] * 2)


class BadImageBudget:
    """Counts unreadable images among those read and stops the run when there are too many.

    The fraction is judged once ``10 / max_fraction`` images have been read (1,000 for the default
    1%), so one bad image early on does not stop a run, while a wrong image folder stops it after
    that many reads. With several ranks the trainer's bad-image hook judges the counts of all of
    them together (:meth:`judge`), so that every rank stops at once.

    Args:
        max_fraction: the largest share of unreadable images a run accepts.
        where: what to name in the error (the config key or folder).
    """

    def __init__(self, max_fraction: float = 0.01, where: str = ""):
        self.max_fraction = max_fraction
        self.where = where
        self.seen = 0
        self.skipped = 0
        self.example = ""

    @property
    def min_seen(self) -> int:
        return int(10 / self.max_fraction) if self.max_fraction > 0 else 0

    def record(self, skipped: List[str], read: int, judge: bool = True) -> None:
        """``skipped`` paths failed among ``len(skipped) + read`` images; with ``judge``, raises
        :class:`InputError` when the share of failures so far is above ``max_fraction``."""
        self.seen += read + len(skipped)
        self.skipped += len(skipped)
        for path in skipped:
            logger.warning(
                "skipped unreadable image %s (%d so far, %.3f%% of %d read)",
                path,
                self.skipped,
                100 * self.skipped / self.seen,
                self.seen,
            )
        self.example = skipped[0] if skipped else self.example
        if judge and skipped:
            self.judge(self.skipped, self.seen)

    def judge(self, skipped: int, seen: int) -> None:
        """Raises :class:`InputError` when ``skipped`` of ``seen`` images (this process's counts, or
        every rank's together) is above the budget."""
        if seen >= self.min_seen and skipped > self.max_fraction * seen:
            example = f"e.g. {self.example}" if self.example else "the images are named in each rank's log"
            raise InputError(
                f"{skipped} of {seen} images could not be read "
                f"{over_budget(skipped, seen, self.max_fraction)}{self.where}; {example}"
            )

    def state_dict(self) -> Dict[str, int]:
        return {"seen": self.seen, "skipped": self.skipped}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.seen, self.skipped = int(state["seen"]), int(state["skipped"])
