"""Label generation (Sec. 3.1): fit on a random held-out subset, assign every other post."""

import logging
import os
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from ..data.label_store import write_label_store
from ..data.records import EngagementRecord, iter_records
from ..errors import InputError
from .labeler import EngagementLabeler

logger = logging.getLogger(__name__)


def held_out_indices(num_posts: int, fraction: float, max_posts: Optional[int], seed: int) -> np.ndarray:
    """Sorted indices of the random fitting subset, ``round(fraction * N)`` posts (capped at ``max_posts``)."""
    n_fit = int(round(fraction * num_posts))
    if max_posts is not None:
        n_fit = min(n_fit, max_posts)
    n_fit = max(1, min(n_fit, num_posts - 1))
    return np.sort(np.random.default_rng(seed).permutation(num_posts)[:n_fit])


class LabelGenerator:
    """Generates a label store from an engagement JSONL file.

    Args:
        comments, reactions: per-task settings: ``k``, ``algorithm`` and (comments) ``tfidf``.
        fit_fraction: share of posts held out to fit the clusters (paper: 20M of 270M).
        fit_max_posts: cap on the held-out subset (None: no cap).
        max_comments_per_post: the paper's 100.
        seed: seeds the split, the comment sampling and K-means.
        chunk_size: posts labelled per step of Step 2.
        skip_bad_records: leave malformed lines out (reported) instead of failing on the first.
    """

    def __init__(self, comments: Dict[str, Any], reactions: Dict[str, Any], fit_fraction: float = 0.074,
                 fit_max_posts: Optional[int] = None, max_comments_per_post: int = 100, seed: int = 0,
                 chunk_size: int = 10_000, skip_bad_records: bool = False):
        self.comments, self.reactions = dict(comments), dict(reactions)
        self.fit_fraction, self.fit_max_posts = fit_fraction, fit_max_posts
        self.max_comments, self.seed = max_comments_per_post, seed
        self.chunk_size, self.skip_bad_records = chunk_size, skip_bad_records

    @classmethod
    def from_config(cls, cfg: Dict[str, Any]) -> "LabelGenerator":
        return cls(
            comments=cfg["comments"],
            reactions=cfg["reactions"],
            fit_fraction=cfg["fit_fraction"],
            fit_max_posts=cfg.get("fit_max_posts"),
            max_comments_per_post=cfg["max_comments_per_post"],
            seed=cfg["seed"],
            chunk_size=cfg["chunk_size"],
            skip_bad_records=cfg["on_bad_record"] == "skip",
        )

    def run(self, posts: str, output: str, image_root: Optional[str] = None) -> Dict[str, Any]:
        """Labels ``posts`` into the store folder ``output``; returns the store's meta.json content."""
        bad: List[str] = []
        records = [r for _, r in iter_records(posts, self.skip_bad_records, bad)]
        for message in bad[:5]:
            logger.warning("skipped %s", message)
        if len(records) < 2:
            raise InputError(f"{posts}: {len(records)} usable posts; need at least 2 (one to fit, one to label)")
        fit_idx = held_out_indices(len(records), self.fit_fraction, self.fit_max_posts, self.seed)
        logger.info("fitting clusters on %d held-out posts of %d", len(fit_idx), len(records))
        labeler = EngagementLabeler.fit([records[i] for i in fit_idx], self.comments, self.reactions,
                                        self.max_comments, self.seed)
        keep = np.ones(len(records), dtype=bool)
        keep[fit_idx] = False
        train: List[EngagementRecord] = [r for r, k in zip(records, keep) if k]
        pairs: List[np.ndarray] = []
        reactions: List[np.ndarray] = []
        with tqdm(total=len(train), desc="assigning labels", unit="post", dynamic_ncols=True) as bar:
            for start in range(0, len(train), self.chunk_size):
                chunk = train[start : start + self.chunk_size]
                chunk_pairs, chunk_reactions = labeler.label(chunk)
                pairs.extend(chunk_pairs)
                reactions.append(chunk_reactions)
                bar.update(len(chunk))
        staging = tempfile.mkdtemp(prefix="vise_labeler_")
        with open(os.path.join(staging, "fit_subset_ids.txt"), "w") as f:
            f.writelines(records[i].id + "\n" for i in fit_idx)
        meta = {
            "source": posts,
            "image_root": image_root or os.path.dirname(os.path.abspath(posts)),
            "tasks": {"comments": {"k": labeler.comment_centroids.k}, "reactions": {"k": labeler.reaction_centroids.k}},
            "fit_subset": {"num_posts": int(len(fit_idx)), "seed": self.seed, "fraction": self.fit_fraction,
                           "ids_file": "model/fit_subset_ids.txt"},
            "skipped_records": len(bad),
            "labeler": labeler.save(staging),
        }
        write_label_store(output, [r.id for r in train], [r.image for r in train], pairs,
                          np.concatenate(reactions), meta, model_dir=staging)
        logger.info("wrote %d labelled posts to %s", len(train), output)
        return meta
