"""Frozen text features for image + text tasks (Hateful Memes), from an installed sentence-encoder package."""

import os
from typing import Optional, Sequence

import numpy as np

from vise_plugin.feature_cache import FeatureCache, list_digest


def text_features(
    texts: Sequence[str],
    package: str,
    cache: FeatureCache,
    device: str = "cpu",
    batch_size: int = 256,
    name: Optional[str] = None,
) -> np.ndarray:
    """``(N, E)`` float32 L2-normalised sentence embeddings of ``texts``, cached as ``<name>.npy``
    (default ``text_<package>``) while the texts and the encoder's weights are unchanged.

    The paper uses RoBERTa sentence embeddings; here the encoder is any package that ships its
    weights (default all-MiniLM-L6-v2, E = 384), so nothing is downloaded.
    """
    from vise_plugin.text.sentence_encoder import SentenceCommentEncoder

    encoder = SentenceCommentEncoder(package, batch_size, device)
    key = FeatureCache.key(weights=encoder.weights_sha256(), texts=list_digest(texts))

    def compute(path: str) -> np.ndarray:
        np.save(path + ".tmp.npy", encoder.transform(list(texts)))
        os.replace(path + ".tmp.npy", path)
        return np.load(path, mmap_mode="r")

    return cache.get(name or f"text_{package}", key, compute)
