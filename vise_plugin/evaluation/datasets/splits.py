"""Seeded random splits; the same seed gives the same split on every machine."""

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)


def random_split(n: int, fractions: Sequence[float], seed: int) -> List[np.ndarray]:
    """Disjoint sorted index arrays covering ``range(n)``, of sizes ``round(f * n)`` (the last takes the rest)."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {list(fractions)} do not sum to 1")
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return [np.sort(part) for part in np.split(perm, bounds)]


def hold_out(
    indices: np.ndarray, fraction: float, seed: int, labels: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)``, both sorted: a seeded ``fraction`` of ``indices`` held out (e.g. val from train).

    With ``labels`` (one class id per index) the hold-out is stratified, so a small val split still
    sees every class. Where that is impossible (a class with a single image, or fewer held-out images
    than classes) it is a plain random hold-out, and the log says why.
    """
    try:
        kept, held = train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as e:
        if labels is None:
            raise
        classes, counts = np.unique(labels, return_counts=True)
        small = classes[counts < 2].tolist()
        why = (
            f"class id(s) {small[:10]}{' ...' if len(small) > 10 else ''} have a single image"
            if small
            else str(e).splitlines()[0]
        )
        logger.warning(
            "val split not stratified (%s); holding out %g of %d images at random", why, fraction, len(indices)
        )
        kept, held = train_test_split(indices, test_size=fraction, random_state=seed)
    return np.sort(kept), np.sort(held)


def fold_with_val(
    train: np.ndarray, test: np.ndarray, val_fraction: float, seed: int, targets: Optional[np.ndarray] = None
) -> dict:
    """A fold whose val part is held out of ``train`` (for datasets without a val split); ``targets``
    (all images' class ids) stratify the hold-out."""
    train = np.asarray(train, np.int64)
    labels = None if targets is None or targets.ndim != 1 else targets[train]
    kept, val = hold_out(train, val_fraction, seed, labels)
    return {"train": kept, "val": val, "test": np.asarray(test, np.int64)}
