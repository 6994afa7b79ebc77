"""K-means centroids and nearest-centroid assignment for engagement features."""

import hashlib
from typing import Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from vise_plugin.errors import ConfigError
from vise_plugin.registry import KMEANS

Features = Union[np.ndarray, sp.spmatrix]


class TooFewToCluster(ConfigError):
    """K-means was asked for more clusters than it has points."""


class Centroids:
    """``k`` centroids ``(k, D)``; :meth:`assign` gives each row of ``(N, D)`` features its nearest one.

    Assignment minimises the squared Euclidean distance that K-means was fitted with, computed as
    ``argmax_j (x . c_j - |c_j|^2 / 2)``. Sparse rows (TF-IDF) are never densified: the dot
    products are a weighted sum of centroid columns, which ``torch.nn.functional.embedding_bag``
    computes in one vectorised pass.
    """

    def __init__(self, centroids: np.ndarray, block_rows: int = 4096):
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.block_rows = block_rows
        self._columns = torch.from_numpy(np.ascontiguousarray(self.centroids.T))  # (D, k)
        self._half_sq_norms = torch.from_numpy(0.5 * (self.centroids.astype(np.float64) ** 2).sum(1)).float()

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @classmethod
    def fit(
        cls,
        features: Features,
        k: int,
        seed: int,
        algorithm: str = "minibatch",
        what: str = "features",
        key: str = "algorithm",
    ) -> "Centroids":
        """Fits K-means on ``(N, D)`` features with the back-end registered in
        :data:`vise_plugin.registry.KMEANS` under ``algorithm`` (``key``: its config key, for errors)."""
        fit = KMEANS.get(algorithm, key)
        n = features.shape[0]
        if n < k:
            raise TooFewToCluster(f"cannot fit k={k} clusters on {n:,} {what}; lower k or fit on more posts")
        return cls(fit(features, k, seed))

    def _scores(self, features: Features) -> torch.Tensor:
        """``(n, D)`` -> ``(n, k)`` float32 ``x . c_j - |c_j|^2 / 2``."""
        if sp.issparse(features):
            csr = features.tocsr()
            dots = F.embedding_bag(
                torch.from_numpy(csr.indices.astype(np.int64)),
                self._columns,
                torch.from_numpy(csr.indptr[:-1].astype(np.int64)),
                mode="sum",
                per_sample_weights=torch.from_numpy(csr.data.astype(np.float32)),
            )
        else:
            dots = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)) @ self._columns
        return dots.sub_(self._half_sq_norms)

    def assign_with_scores(self, features: Features) -> Tuple[np.ndarray, np.ndarray]:
        """``(N, D)`` -> ``(N,)`` int32 cluster ids and ``(N,)`` float32 scores (higher: closer)."""
        n = features.shape[0]
        ids, scores = np.zeros(n, np.int32), np.zeros(n, np.float32)
        for start in range(0, n, self.block_rows):
            best = self._scores(features[start : start + self.block_rows]).max(dim=1)
            ids[start : start + self.block_rows] = best.indices.numpy()
            scores[start : start + self.block_rows] = best.values.numpy()
        return ids, scores

    def assign(self, features: Features) -> np.ndarray:
        """``(N, D)`` -> ``(N,)`` int32 cluster ids."""
        return self.assign_with_scores(features)[0]

    def checksum(self) -> str:
        return hashlib.sha256(self.centroids.tobytes()).hexdigest()

    def save(self, path: str) -> None:
        np.save(path, self.centroids)

    @classmethod
    def load(cls, path: str) -> "Centroids":
        return cls(np.load(path))


@KMEANS.register("minibatch")
def fit_minibatch(features: Features, k: int, seed: int, batch_size: int = 4096) -> np.ndarray:
    """scikit-learn's MiniBatchKMeans; ``(k, D)`` centroids."""
    from sklearn.cluster import MiniBatchKMeans  # scikit-learn loads in seconds: only where it is used

    return (
        MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size, n_init=3).fit(features).cluster_centers_
    )


@KMEANS.register("full")
def fit_full(features: Features, k: int, seed: int) -> np.ndarray:
    """scikit-learn's KMeans (Lloyd); ``(k, D)`` centroids."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=seed, n_init=3).fit(features).cluster_centers_


@KMEANS.register("faiss")
def fit_faiss(features: Features, k: int, seed: int) -> np.ndarray:
    """faiss K-means on dense features (the optional ``faiss-cpu`` package); ``(k, D)`` centroids."""
    try:
        import faiss
    except ImportError:
        raise ConfigError("K-means algorithm 'faiss' needs the faiss-cpu package: pip install -e '.[faiss]'") from None
    if sp.issparse(features):
        raise ConfigError(
            "K-means algorithm 'faiss' needs dense features; set config.labels.comments.svd_dim (e.g. 256)"
        )
    x = np.ascontiguousarray(features, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=25, nredo=1, seed=seed, verbose=False, spherical=False)
    km.train(x)
    return km.centroids
