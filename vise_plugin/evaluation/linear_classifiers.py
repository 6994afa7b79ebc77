"""Many linear classifiers (a grid of learning rates and weight decays) trained in one pass over cached features."""

import itertools
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vise_plugin.process_state import seeded
from vise_plugin.registry import METRICS

Features = Union[np.ndarray, Sequence[np.ndarray]]


class FeatureRows:
    """Rows of one or more ``(N, D_i)`` arrays (in memory or memory-mapped), concatenated and standardised.

    ``rows(idx)`` returns ``(len(idx), sum D_i)`` float32 ``(x - mean) / std``, with mean and std of
    the rows :meth:`fit_standardisation` saw (read in chunks, so a memory-mapped cache is never loaded whole).
    """

    def __init__(self, features: Features):
        self.blocks = [features] if isinstance(features, np.ndarray) else list(features)
        self.dim = sum(b.shape[1] for b in self.blocks)
        self.mean, self.std = np.zeros(self.dim, np.float64), np.ones(self.dim, np.float64)

    def raw(self, idx: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(b[idx], dtype=np.float64) for b in self.blocks], axis=1)

    def fit_standardisation(self, idx: np.ndarray, chunk: int = 65536) -> None:
        total, total_sq = np.zeros(self.dim), np.zeros(self.dim)
        for start in range(0, len(idx), chunk):
            x = self.raw(idx[start : start + chunk])
            total += x.sum(0)
            total_sq += (x * x).sum(0)
        self.mean = total / len(idx)
        self.std = np.sqrt(np.maximum(total_sq / len(idx) - self.mean**2, 0.0)) + 1e-6

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((self.raw(idx) - self.mean) / self.std).astype(np.float32))


class LinearClassifierGrid(nn.Module):
    """One ``nn.Linear(dim, num_classes)`` per (lr, weight decay) pair, all fed the same batches.

    Forward takes ``(B, dim)`` and returns ``(H, B, num_classes)`` logits for the ``H`` heads.
    ``multilabel`` trains with binary cross-entropy on ``(B, K)`` multi-hot targets, else
    cross-entropy on ``(B,)`` class ids.
    """

    def __init__(
        self, dim: int, num_classes: int, lrs: Sequence[float], weight_decays: Sequence[float], multilabel: bool = False
    ):
        super().__init__()
        self.settings: List[Tuple[float, float]] = list(itertools.product(lrs, weight_decays))
        self.multilabel = multilabel
        self.heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in self.settings)
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(x) for head in self.heads])

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over heads of each head's mean loss, so every head gets its own gradient."""
        if self.multilabel:
            return sum(F.binary_cross_entropy_with_logits(h, y.float()) for h in logits)
        return sum(F.cross_entropy(h, y) for h in logits)

    def fit(
        self, rows: FeatureRows, targets: np.ndarray, train: np.ndarray, epochs: int, batch_size: int, seed: int = 0
    ) -> None:
        """SGD (momentum 0.9, cosine decay) over the ``train`` indices; head ``h`` uses ``settings[h]``."""
        groups = [
            {"params": h.parameters(), "lr": lr, "weight_decay": wd} for h, (lr, wd) in zip(self.heads, self.settings)
        ]
        opt = torch.optim.SGD(groups, momentum=0.9)
        num_batches = max(1, -(-len(train) // batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * num_batches)
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            for part in np.array_split(rng.permutation(len(train)), num_batches):
                idx = np.sort(train[part])
                loss = self.loss(self(rows.rows(idx)), torch.as_tensor(targets[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()

    @torch.no_grad()
    def scores(self, rows: FeatureRows, idx: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """``(H, n, K)`` logits of every head for the rows ``idx``."""
        return torch.cat([self(rows.rows(idx[s : s + chunk])) for s in range(0, len(idx), chunk)], dim=1).numpy()

    def raw_classifier(self, head: int, rows: FeatureRows) -> Tuple[np.ndarray, np.ndarray]:
        """Head ``head`` as ``(K, D)`` weight and ``(K,)`` bias acting on unstandardised features."""
        w = self.heads[head].weight.detach().double().numpy() / rows.std
        b = self.heads[head].bias.detach().double().numpy() - w @ rows.mean
        return w.astype(np.float32), b.astype(np.float32)


def linear_eval(
    features: Features,
    targets: np.ndarray,
    fold: Dict[str, np.ndarray],
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    epochs: int = 100,
    batch_size: int = 256,
    seed: int = 0,
    metrics: Sequence[str] = ("acc",),
) -> Dict:
    """The linear protocol on cached features.

    Standardises with train statistics, trains the grid on ``fold["train"]``, picks the head with
    the best ``metrics[0]`` on ``fold["val"]`` and reports every metric of that head on val and test.
    ``features``: ``(N, D)`` or a list of arrays concatenated along D (image + text features);
    ``targets``: ``(N,)`` class ids or ``(N, K)`` multi-hot. Returns ``{"val_<m>", "test_<m>", "lr",
    "weight_decay", "test_scores": (n_test, K), "classifier": (weight (K, D), bias (K,)) on raw
    features}``.
    """
    rows = FeatureRows(features)
    train, val, test = (np.asarray(fold[s], np.int64) for s in ("train", "val", "test"))
    rows.fit_standardisation(train)
    multilabel = targets.ndim == 2
    num_classes = targets.shape[1] if multilabel else int(targets.max()) + 1
    with seeded(seed):
        grid = LinearClassifierGrid(rows.dim, num_classes, lrs, weight_decays, multilabel)
        grid.fit(rows, targets, train, epochs, batch_size, seed)
    val_scores = grid.scores(rows, val)
    select = METRICS.get(metrics[0])
    selected = np.array([select(s, targets[val]) for s in val_scores])
    best = int(np.argmax(np.where(np.isnan(selected), -np.inf, selected)))  # NaN: one class only in val
    test_scores = grid.scores(rows, test)[best]
    out = {f"val_{m}": METRICS.get(m)(val_scores[best], targets[val]) for m in metrics}
    out.update({f"test_{m}": METRICS.get(m)(test_scores, targets[test]) for m in metrics})
    lr, wd = grid.settings[best]
    out.update(
        {"lr": lr, "weight_decay": wd, "test_scores": test_scores, "classifier": grid.raw_classifier(best, rows)}
    )
    return out
