"""Optional reduction of comment features before K-means (TruncatedSVD), for clustering at scale."""

import hashlib
import os
from typing import Union

import numpy as np
import scipy.sparse as sp


class SvdProjection:
    """``(N, V)`` features -> ``(N, d)`` dense float32 rows ``x @ components.T``, L2-normalised.

    Fitted with scikit-learn's TruncatedSVD; stored as one ``(d, V)`` array.
    """

    file_name = "comments_svd_components.npy"

    def __init__(self, components: np.ndarray):
        self.components = np.ascontiguousarray(components, dtype=np.float32)

    @classmethod
    def fit(cls, features: Union[np.ndarray, sp.spmatrix], dim: int, seed: int) -> "SvdProjection":
        from sklearn.decomposition import TruncatedSVD  # scikit-learn loads in seconds: only where it is used

        svd = TruncatedSVD(n_components=dim, random_state=seed, algorithm="randomized")
        svd.fit(features)
        return cls(svd.components_)

    def transform(self, features: Union[np.ndarray, sp.spmatrix]) -> np.ndarray:
        reduced = np.asarray(features @ self.components.T, dtype=np.float32)
        norms = np.linalg.norm(reduced, axis=1, keepdims=True)
        return np.divide(reduced, norms, out=np.zeros_like(reduced), where=norms > 0)

    def back_project(self, vectors: np.ndarray) -> np.ndarray:
        """``(K, d)`` vectors (e.g. centroids) -> ``(K, V)`` in the original feature space."""
        return vectors @ self.components

    def checksum(self) -> str:
        return hashlib.sha256(self.components.tobytes()).hexdigest()

    def save(self, folder: str) -> None:
        np.save(os.path.join(folder, self.file_name), self.components)

    @classmethod
    def load(cls, folder: str) -> "SvdProjection":
        path = os.path.join(folder, cls.file_name)
        return cls(np.load(path)) if os.path.exists(path) else None
