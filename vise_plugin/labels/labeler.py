"""The fitted label model: comment encoder (+ optional SVD) + comment centroids + reaction centroids."""

import json
import os
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from vise_plugin.labels.clustering import Centroids
from vise_plugin.labels.encoders import (
    CommentEncoder,
    build_comment_encoder,
    load_comment_encoder,
    save_comment_encoder,
)
from vise_plugin.labels.projection import SvdProjection
from vise_plugin.labels.reaction_encoder import reaction_vectors
from vise_plugin.labels.records import REACTION_TYPES, EngagementRecord

EXAMPLES_PER_CLUSTER = 3


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


def _has_content(features) -> np.ndarray:
    if sp.issparse(features):
        return features.getnnz(axis=1) > 0
    return np.abs(features).sum(axis=1) > 0


class EngagementLabeler:
    """Turns engagement records into VisE pseudo-labels (Sec. 3.1, Steps 1 and 2).

    Args:
        comment_encoder: fitted encoder (:class:`TfidfCommentEncoder` or :class:`SentenceCommentEncoder`).
        comment_centroids / reaction_centroids: fitted :class:`Centroids`.
        projection: optional :class:`SvdProjection` between the encoder and the comment centroids.
        max_comments: comments sampled per post (the paper: 100).
        seed: seed of the comment sampling.
        reaction_types: the reaction names, in the order of the reaction vectors' dimensions.
    """

    def __init__(
        self,
        comment_encoder: CommentEncoder,
        comment_centroids: Centroids,
        reaction_centroids: Centroids,
        projection: Optional[SvdProjection] = None,
        max_comments: int = 100,
        seed: int = 0,
        reaction_types: Sequence[str] = REACTION_TYPES,
    ):
        self.comment_encoder = comment_encoder
        self.comment_centroids = comment_centroids
        self.reaction_centroids = reaction_centroids
        self.projection = projection
        self.max_comments = max_comments
        self.seed = seed
        self.reaction_types = tuple(reaction_types)
        self.examples: Dict[str, List[str]] = {}

    @classmethod
    def fit(
        cls,
        records: Sequence[EngagementRecord],
        comments_cfg: Dict[str, Any],
        reactions_cfg: Dict[str, Any],
        max_comments: int = 100,
        seed: int = 0,
    ) -> "EngagementLabeler":
        """Step 1: fits the encoder and both K-means on ``records`` (the held-out subset).

        ``comments_cfg``: ``k``, ``algorithm``, ``encoder`` and its settings, ``svd_dim`` (None: no
        reduction) and ``fit_max_comments`` (a seeded sample of at most this many comments is
        clustered). ``reactions_cfg``: ``k``, ``algorithm`` and ``types`` (the reaction names; None:
        the paper's five).
        """
        comments = [c for r in records for c in sample_comments(r, max_comments, seed)]
        cap = comments_cfg.get("fit_max_comments")
        if cap is not None and len(comments) > cap:
            keep = np.sort(np.random.default_rng(seed).choice(len(comments), size=cap, replace=False))
            comments = [comments[i] for i in keep]
        encoder = build_comment_encoder(comments_cfg).fit(comments)
        features = encoder.transform(comments)
        nonempty = _has_content(features)
        features, comments = features[nonempty], [c for c, ok in zip(comments, nonempty) if ok]
        projection = None
        if comments_cfg.get("svd_dim"):
            projection = SvdProjection.fit(features, int(comments_cfg["svd_dim"]), seed)
            features = projection.transform(features)
        comment_centroids = Centroids.fit(
            features,
            comments_cfg["k"],
            seed,
            comments_cfg.get("algorithm", "minibatch"),
            what="non-empty comments",
            key="config.labels.comments.algorithm",
        )
        reaction_types = tuple(reactions_cfg.get("types") or REACTION_TYPES)
        vectors, has = reaction_vectors([r.reactions for r in records], reaction_types)
        reaction_centroids = Centroids.fit(
            vectors[has],
            reactions_cfg["k"],
            seed,
            reactions_cfg.get("algorithm", "full"),
            what="posts with reactions",
            key="config.labels.reactions.algorithm",
        )
        labeler = cls(encoder, comment_centroids, reaction_centroids, projection, max_comments, seed, reaction_types)
        labeler.examples = _closest_examples(comment_centroids, features, comments)
        return labeler

    def comment_features(self, comments: Sequence[str]):
        """``N`` comments -> ``(N, D)`` features in the space of the comment centroids."""
        features = self.comment_encoder.transform(comments)
        return features if self.projection is None else self.projection.transform(features)

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
            features = self.comment_features(flat)
            known = _has_content(features)
            ids = self.comment_centroids.assign(features[known])
            k = self.comment_centroids.k
            keys, counts = np.unique(owner[known].astype(np.int64) * k + ids, return_counts=True)
            post, cluster = np.divmod(keys, k)
            bounds = np.searchsorted(post, np.arange(len(records) + 1))
            table = np.stack([cluster, counts], axis=1).astype(np.int32)
            pairs = [table[bounds[i] : bounds[i + 1]] for i in range(len(records))]
        vectors, has = reaction_vectors([r.reactions for r in records], self.reaction_types)
        reactions = np.full(len(records), -1, dtype=np.int32)
        if has.any():
            reactions[has] = self.reaction_centroids.assign(vectors[has])
        return pairs, reactions

    def comment_centroid_terms(self, n: int = 8) -> Optional[List[List[str]]]:
        """Top terms of each comment cluster, or None for encoders without terms."""
        centroids = self.comment_centroids.centroids
        if self.projection is not None:
            centroids = self.projection.back_project(centroids)
        return self.comment_encoder.top_terms(centroids, n)

    def save(self, folder: str) -> Dict[str, Any]:
        """Writes the model files into ``folder``; returns their description for meta.json."""
        os.makedirs(folder, exist_ok=True)
        self.comment_centroids.save(os.path.join(folder, "comments_centroids.npy"))
        self.reaction_centroids.save(os.path.join(folder, "reactions_centroids.npy"))
        checksums = {
            "comments_encoder": save_comment_encoder(self.comment_encoder, folder),
            "comments_centroids": self.comment_centroids.checksum(),
            "reactions_centroids": self.reaction_centroids.checksum(),
        }
        if self.projection is not None:
            self.projection.save(folder)
            checksums["comments_svd"] = self.projection.checksum()
        info = {
            "encoder": self.comment_encoder.kind,
            "max_comments": self.max_comments,
            "seed": self.seed,
            "reaction_types": list(self.reaction_types),
            "checksums": checksums,
        }
        with open(os.path.join(folder, "labeler.json"), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        with open(os.path.join(folder, "comments_examples.json"), "w") as f:
            json.dump(self.examples, f, indent=1, sort_keys=True, ensure_ascii=False)
        return info

    @classmethod
    def load(cls, folder: str) -> "EngagementLabeler":
        with open(os.path.join(folder, "labeler.json")) as f:
            info = json.load(f)
        labeler = cls(
            load_comment_encoder(folder),
            Centroids.load(os.path.join(folder, "comments_centroids.npy")),
            Centroids.load(os.path.join(folder, "reactions_centroids.npy")),
            SvdProjection.load(folder),
            info["max_comments"],
            info["seed"],
            info.get("reaction_types", REACTION_TYPES),
        )
        examples = os.path.join(folder, "comments_examples.json")
        if os.path.exists(examples):
            with open(examples) as f:
                labeler.examples = json.load(f)
        return labeler


def _closest_examples(centroids: Centroids, features, comments: Sequence[str]) -> Dict[str, List[str]]:
    """For each cluster, the distinct fitting comments closest to its centroid (for the report)."""
    ids, scores = centroids.assign_with_scores(features)
    order = np.lexsort((-scores, ids))
    examples: Dict[str, List[str]] = {}
    for i in order:
        chosen = examples.setdefault(str(int(ids[i])), [])
        if len(chosen) < EXAMPLES_PER_CLUSTER and comments[i] not in chosen:
            chosen.append(comments[i])
    return examples
