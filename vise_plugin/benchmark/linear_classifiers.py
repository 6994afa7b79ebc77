"""Many linear classifiers (a grid of learning rates and weight decays) trained in one pass."""

import itertools
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LinearClassifierGrid(nn.Module):
    """One ``nn.Linear(dim, num_classes)`` per (lr, weight decay) pair, all fed the same batches.

    Forward takes ``(B, dim)`` and returns ``(H, B, num_classes)`` logits for the ``H`` heads.
    """

    def __init__(self, dim: int, num_classes: int, lrs: Sequence[float], weight_decays: Sequence[float]):
        super().__init__()
        self.settings: List[Tuple[float, float]] = list(itertools.product(lrs, weight_decays))
        self.heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in self.settings)
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(x) for head in self.heads])

    def fit(self, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, seed: int = 0) -> None:
        """SGD (momentum 0.9, cosine decay) on ``x: (N, dim)``, ``y: (N,)``; each head its own lr and wd."""
        groups = [{"params": h.parameters(), "lr": lr, "weight_decay": wd}
                  for h, (lr, wd) in zip(self.heads, self.settings)]
        opt = torch.optim.SGD(groups, momentum=0.9)
        steps = epochs * ((len(x) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                logits = self(x[idx])
                loss = sum(F.cross_entropy(l, y[idx]) for l in logits)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()

    @torch.no_grad()
    def accuracies(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """``(H,)`` top-1 accuracy (%) of every head."""
        return (self(x).argmax(dim=2) == y).float().mean(dim=1).mul(100).numpy()


def linear_eval(train: Tuple[np.ndarray, np.ndarray], val: Tuple[np.ndarray, np.ndarray],
                test: Tuple[np.ndarray, np.ndarray], lrs: Sequence[float], weight_decays: Sequence[float],
                epochs: int = 100, batch_size: int = 256, seed: int = 0) -> Dict[str, float]:
    """Linear protocol on cached features: standardise with train statistics, train the grid,
    pick the head with the best val accuracy and report its test accuracy."""
    mean, std = train[0].mean(0), train[0].std(0) + 1e-6

    def prep(split):
        return torch.from_numpy((split[0] - mean) / std).float(), torch.from_numpy(split[1]).long()

    (xtr, ytr), (xva, yva), (xte, yte) = prep(train), prep(val), prep(test)
    torch.manual_seed(seed)
    grid = LinearClassifierGrid(xtr.shape[1], int(max(ytr.max(), yva.max(), yte.max())) + 1, lrs, weight_decays)
    grid.fit(xtr, ytr, epochs, batch_size, seed)
    val_acc = grid.accuracies(xva, yva)
    best = int(np.argmax(val_acc))
    lr, wd = grid.settings[best]
    return {"val_acc": float(val_acc[best]), "test_acc": float(grid.accuracies(xte, yte)[best]), "lr": lr,
            "weight_decay": wd}
