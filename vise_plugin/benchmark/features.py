"""Frozen-trunk feature extraction."""

import hashlib
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm


@torch.no_grad()
def extract_features(trunk: nn.Module, dataset: torch.utils.data.Dataset, batch_size: int = 128,
                     num_workers: int = 0, device: str = "cpu", desc: str = "features") -> Tuple[np.ndarray, np.ndarray]:
    """Global-average-pooled trunk features of every ``(image, label)`` item.

    Returns ``(N, C)`` float32 features and ``(N,)`` int64 labels. The trunk runs in eval mode and
    is put back in its previous mode afterwards.
    """
    was_training = trunk.training
    trunk.eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    feats, labels = [], []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        out = trunk(images.to(device))
        feats.append(out.mean(dim=(2, 3)) if out.dim() == 4 else out)
        labels.append(torch.as_tensor(targets))
    trunk.train(was_training)
    return torch.cat(feats).float().cpu().numpy(), torch.cat(labels).cpu().numpy().astype(np.int64)


def state_fingerprint(module: nn.Module) -> str:
    """sha256 over every parameter and buffer, to check that a frozen trunk did not change."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
