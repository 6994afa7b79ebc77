"""Submissions' reaction counts, a column per channel (the derivation is documented on
:class:`~vise_plugin.reddit.settings.RedditSettings`)."""

from typing import Dict, Sequence

import numpy as np

from vise_plugin.reddit.records import Submission


def reaction_columns(subs: Sequence[Submission], names: Sequence[str]) -> Dict[str, np.ndarray]:
    """``{name: int64 array of len(subs)}`` for each of ``names`` (from
    :data:`~vise_plugin.reddit.settings.REACTION_CHANNELS`)."""
    score = np.array([s.score or 0 for s in subs], np.int64)
    columns = {}
    if "upvotes" in names or "downvotes" in names:
        ratio = np.array([1.0 if s.upvote_ratio is None else s.upvote_ratio for s in subs], np.float64)
        spread = 2 * ratio - 1
        usable = np.abs(spread) > 1e-9
        # np.rint rounds half to even, as Python's round()
        upvotes = np.where(usable, np.rint(score * ratio / np.where(usable, spread, 1.0)), 0.0)
        columns["upvotes"] = np.maximum(upvotes, 0).astype(np.int64)
        columns["downvotes"] = np.maximum(columns["upvotes"] - score, 0)
    if "comments" in names:
        columns["comments"] = np.array([s.num_comments or 0 for s in subs], np.int64)
    if "awards" in names:
        columns["awards"] = np.array(
            [s.total_awards_received if s.total_awards_received is not None else _awards(s) for s in subs], np.int64
        )
    if "score" in names:
        columns["score"] = np.maximum(score, 0)
    return {name: columns[name] for name in names}


def _awards(sub: Submission) -> int:
    return sum(a.count for a in sub.all_awardings or ()) + sum((sub.gildings or {}).values())
