"""Label names -> class ids, single- or multi-label."""

from typing import List, Sequence, Tuple

import numpy as np


def _class_order(names) -> List[str]:
    names = set(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_labels(
    labels: Sequence[Sequence[str]], multilabel: bool, classes: Sequence[str] = None
) -> Tuple[np.ndarray, List[str]]:
    """Per image a list of label names -> targets and class names.

    Returns ``(N,)`` int64 class ids (``multilabel=False``: every image needs exactly one label) or
    ``(N, K)`` float32 multi-hot. Classes are sorted (numerically when every name is an integer)
    unless ``classes`` is given.
    """
    classes = list(classes) if classes is not None else _class_order(n for row in labels for n in row)
    index = {c: i for i, c in enumerate(classes)}
    if not multilabel:
        bad = next((i for i, row in enumerate(labels) if len(row) != 1), None)
        if bad is not None:
            raise ValueError(f"entry {bad} has {len(labels[bad])} labels; set config.benchmark.dataset.multilabel=true")
        return np.array([index[row[0]] for row in labels], np.int64), classes
    targets = np.zeros((len(labels), len(classes)), np.float32)
    for i, row in enumerate(labels):
        targets[i, [index[n] for n in row]] = 1.0
    return targets, classes
