"""Benchmark metrics on class scores, as percentages (ROC AUC as a fraction, as the paper reports it),
by name in :data:`vise_plugin.registry.METRICS`; a dataset lists the names it reports."""

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from vise_plugin.registry import METRICS


@METRICS.register("acc")
def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy (%) of ``scores: (N, K)`` against ``targets: (N,)`` class ids."""
    return float(100.0 * np.mean(scores.argmax(axis=1) == targets))


@METRICS.register("roc_auc")
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


@METRICS.register("map")
def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Multi-label mAP (%): ``targets: (N, K)`` multi-hot; classes without a positive are skipped."""
    present = targets.sum(axis=0) > 0
    return float(100.0 * average_precision_score(targets[:, present], scores[:, present], average="macro"))
