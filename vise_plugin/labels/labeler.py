"""The fitted label model: comment encoder + comment centroids + reaction centroids."""

import json
import os
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.records import EngagementRecord
from .clustering import Centroids
from .comment_encoder import TfidfCommentEncoder
from .reaction_encoder import reaction_vectors


def sample_comments(record: EngagementRecord, max_comments: int, seed: int) -> List[str]:
    """At most ``max_comments`` of the post's comments, drawn without replacement.

    The draw depends only on ``seed`` and the post id, so it is the same in every run, chunk
    order or shard layout.
    """
    if len(record.comments) <= max_comments:
        return list(record.comments)
    rng = np.random.default_rng([seed, zlib.crc32(record.id.encode("utf-8"))])
    keep = np.sort(rng.choice(len(record.comments), size=max_comments, replace=False))
    return [record.comments[i] for i in keep]


class EngagementLabeler:
    """Turns engagement records into VisE pseudo-labels (Sec. 3.1, Steps 1 and 2).

    Args:
        comment_encoder: fitted :class:`TfidfCommentEncoder`, or None when comments are not used.
        comment_centroids / reaction_centroids: fitted :class:`Centroids` or None.
        max_comments: comments sampled per post (the paper: 100).
        seed: seed of the comment sampling.
    """

    def __init__(
        self,
        comment_encoder: Optional[TfidfCommentEncoder],
        comment_centroids: Optional[Centroids],
        reaction_centroids: Optional[Centroids],
        max_comments: int = 100,
        seed: int = 0,
    ):
        self.comment_encoder = comment_encoder
        self.comment_centroids = comment_centroids
        self.reaction_centroids = reaction_centroids
        self.max_comments = max_comments
        self.seed = seed

    @classmethod
    def fit(cls, records: Sequence[EngagementRecord], comments_cfg: Dict[str, Any], reactions_cfg: Dict[str, Any],
            max_comments: int = 100, seed: int = 0) -> "EngagementLabeler":
        """Step 1: fits the encoder and both K-means on ``records`` (the held-out subset)."""
        comments = [c for r in records for c in sample_comments(r, max_comments, seed)]
        encoder = TfidfCommentEncoder(**comments_cfg.get("tfidf", {})).fit(comments)
        features = encoder.transform(comments)
        features = features[features.getnnz(axis=1) > 0]
        comment_centroids = Centroids.fit(features, comments_cfg["k"], seed, comments_cfg.get("algorithm", "minibatch"),
                                          what="non-empty comments")
        vectors, has = reaction_vectors([r.reactions for r in records])
        reaction_centroids = Centroids.fit(vectors[has], reactions_cfg["k"], seed, reactions_cfg.get("algorithm", "full"),
                                           what="posts with reactions")
        return cls(encoder, comment_centroids, reaction_centroids, max_comments, seed)

    def label(self, records: Sequence[EngagementRecord]) -> Tuple[List[np.ndarray], np.ndarray]:
        """Step 2 for a chunk of posts.

        Returns ``comment_pairs`` (per post an ``(n_i, 2)`` int32 array of (cluster id, count);
        comments with no known term get no label) and ``reactions`` ``(N,)`` int32 (-1: none).
        """
        per_post = [sample_comments(r, self.max_comments, self.seed) for r in records]
        owner = np.repeat(np.arange(len(records)), [len(c) for c in per_post])
        flat = [c for comments in per_post for c in comments]
        pairs: List[np.ndarray] = [np.zeros((0, 2), np.int32)] * len(records)
        if flat:
            features = self.comment_encoder.transform(flat)
            known = features.getnnz(axis=1) > 0
            ids = self.comment_centroids.assign(features[known])
            owner = owner[known]
            order = np.lexsort((ids, owner))
            keys = owner[order].astype(np.int64) * self.comment_centroids.k + ids[order]
            uniq, counts = np.unique(keys, return_counts=True)
            post, cluster = np.divmod(uniq, self.comment_centroids.k)
            bounds = np.searchsorted(post, np.arange(len(records) + 1))
            table = np.stack([cluster, counts], axis=1).astype(np.int32)
            pairs = [table[bounds[i] : bounds[i + 1]] for i in range(len(records))]
        vectors, has = reaction_vectors([r.reactions for r in records])
        reactions = np.full(len(records), -1, dtype=np.int32)
        if has.any():
            reactions[has] = self.reaction_centroids.assign(vectors[has])
        return pairs, reactions

    def save(self, folder: str) -> Dict[str, Any]:
        """Writes the model files into ``folder``; returns their description for meta.json."""
        os.makedirs(folder, exist_ok=True)
        self.comment_centroids.save(os.path.join(folder, "comments_centroids.npy"))
        self.reaction_centroids.save(os.path.join(folder, "reactions_centroids.npy"))
        info = {
            "max_comments": self.max_comments,
            "seed": self.seed,
            "checksums": {
                "comments_vectorizer": self.comment_encoder.save(folder),
                "comments_centroids": self.comment_centroids.checksum(),
                "reactions_centroids": self.reaction_centroids.checksum(),
            },
        }
        with open(os.path.join(folder, "labeler.json"), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        return info

    @classmethod
    def load(cls, folder: str) -> "EngagementLabeler":
        with open(os.path.join(folder, "labeler.json")) as f:
            info = json.load(f)
        return cls(
            TfidfCommentEncoder.load(folder),
            Centroids.load(os.path.join(folder, "comments_centroids.npy")),
            Centroids.load(os.path.join(folder, "reactions_centroids.npy")),
            info["max_comments"],
            info["seed"],
        )
