"""Benchmark metrics on class scores, as percentages (ROC AUC as a fraction, as the paper reports it)."""

from typing import Callable, Dict

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy (%) of ``scores: (N, K)`` against ``targets: (N,)`` class ids."""
    return float(100.0 * np.mean(scores.argmax(axis=1) == targets))


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro ROC AUC of ``scores: (N, K)`` (logits or probabilities) against ``targets: (N,)``.

    Binary tasks use the positive class's score; with ``K > 2`` classes, one-vs-rest over softmax
    probabilities, averaged over classes.
    """
    if scores.shape[1] == 2:
        return float(roc_auc_score(targets, scores[:, 1] - scores[:, 0]))
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return float(roc_auc_score(targets, probs, multi_class="ovr", average="macro"))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Multi-label mAP (%): ``targets: (N, K)`` multi-hot; classes without a positive are skipped."""
    present = targets.sum(axis=0) > 0
    return float(100.0 * average_precision_score(targets[:, present], scores[:, present], average="macro"))


METRICS: Dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "acc": accuracy,
    "roc_auc": roc_auc,
    "map": mean_average_precision,
}
