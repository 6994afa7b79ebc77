"""phi_R of the paper: reaction counts as an L2-normalised distribution over the five buttons (or the
reaction types a label job names)."""

from typing import Dict, Sequence, Tuple

import numpy as np

from vise_plugin.labels.records import REACTION_TYPES


def reaction_vectors(
    reactions: Sequence[Dict[str, int]], types: Sequence[str] = REACTION_TYPES
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-post counts -> ``(N, len(types))`` float32 L2-normalised vectors and an ``(N,)`` bool mask of
    posts with at least one reaction (rows of posts without any are zero)."""
    counts = np.array([[r.get(name, 0) for name in types] for r in reactions], dtype=np.float32)
    counts = counts.reshape(-1, len(types))
    norms = np.linalg.norm(counts, axis=1)
    has = norms > 0
    counts[has] /= norms[has, None]
    return counts, has
