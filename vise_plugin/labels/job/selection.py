"""Which posts are held out to fit the clusters (Sec. 3.1: fitted on a subset excluded from pretraining).

A post's membership depends only on its id and the seed, never on file order or sharding: each
post gets a uniform score in [0, 1) from a hash of ``(seed, id)``, and the fitting subset is
every post whose score is below a threshold. The threshold is ``fit_fraction``, or lower when
``fit_max_posts`` caps the subset (then exactly the ``fit_max_posts`` lowest scores are below it).
"""

import hashlib
from typing import Optional

import numpy as np


def fit_score(post_id: str, seed: int) -> float:
    """Uniform pseudo-random score in [0, 1) of ``post_id`` under ``seed``."""
    digest = hashlib.blake2b(f"{seed}\x00{post_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def fit_threshold(candidate_scores: np.ndarray, fraction: float, max_posts: Optional[int]) -> float:
    """The score threshold given every score below ``fraction`` (the candidates) and the cap."""
    if max_posts is None or len(candidate_scores) <= max_posts:
        return float(fraction)
    ordered = np.sort(candidate_scores)
    return float(ordered[max_posts])  # exclusive: the max_posts lowest scores are below it
