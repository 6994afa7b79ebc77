"""Computed arrays (image features, text embeddings) cached as ``.npy`` files under a key of everything
they depend on; used by evaluation, feature extraction and the web-tag text embeddings."""

import hashlib
import json
import os
from typing import Sequence

import numpy as np


class FeatureCache:
    """A folder of cached features, one ``<name>.npy`` per key, reused while the key matches.

    The key holds everything the features depend on (trunk fingerprint, image list, layer, image
    size); a changed key recomputes them.
    """

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def get(self, name: str, key: str, compute) -> np.ndarray:
        """Cached ``<name>.npy`` when its key matches, else ``compute(path)`` (which writes it)."""
        path, key_path = os.path.join(self.folder, f"{name}.npy"), os.path.join(self.folder, f"{name}.key")
        if os.path.exists(path) and os.path.exists(key_path):
            with open(key_path) as f:
                if f.read() == key:
                    return np.load(path, mmap_mode="r")
        if os.path.exists(key_path):
            os.remove(key_path)
        feats = compute(path)
        with open(key_path + ".tmp", "w") as f:
            f.write(key)
        os.replace(key_path + ".tmp", key_path)
        return feats


def list_digest(items: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()
