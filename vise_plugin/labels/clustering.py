"""K-means centroids and nearest-centroid assignment for engagement features."""

import hashlib
from typing import Union

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans, MiniBatchKMeans

from ..errors import ConfigError

Features = Union[np.ndarray, sp.spmatrix]


class Centroids:
    """``k`` centroids ``(k, D)``; :meth:`assign` gives each row of ``(N, D)`` features its nearest one.

    Assignment minimises the squared Euclidean distance that K-means was fitted with, computed as
    ``argmax_j (x . c_j - |c_j|^2 / 2)`` so sparse TF-IDF rows never need densifying.
    """

    def __init__(self, centroids: np.ndarray):
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self._half_sq_norms = 0.5 * (self.centroids**2).sum(axis=1)

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @classmethod
    def fit(cls, features: Features, k: int, seed: int, algorithm: str = "minibatch", what: str = "features",
            batch_size: int = 4096) -> "Centroids":
        """Fits K-means; ``algorithm`` is ``minibatch`` (MiniBatchKMeans) or ``full`` (Lloyd's KMeans)."""
        n = features.shape[0]
        if n < k:
            raise ConfigError(f"cannot fit k={k} clusters on {n} {what}; lower k or fit on more posts")
        if algorithm == "minibatch":
            km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size, n_init=3)
        elif algorithm == "full":
            km = KMeans(n_clusters=k, random_state=seed, n_init=3)
        else:
            raise ConfigError(f"unknown K-means algorithm {algorithm!r}; use 'minibatch' or 'full'")
        km.fit(features)
        return cls(km.cluster_centers_)

    def assign(self, features: Features) -> np.ndarray:
        """``(N, D)`` -> ``(N,)`` int32 cluster ids."""
        scores = features @ self.centroids.T
        scores = np.asarray(scores) - self._half_sq_norms
        return scores.argmax(axis=1).astype(np.int32)

    def checksum(self) -> str:
        return hashlib.sha256(self.centroids.tobytes()).hexdigest()

    def save(self, path: str) -> None:
        np.save(path, self.centroids)

    @classmethod
    def load(cls, path: str) -> "Centroids":
        return cls(np.load(path))
