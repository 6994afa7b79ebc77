"""How many clusters and how large a held-out subset suit a number of posts: the guidance the label job's
errors give and the ``labels/small`` and ``labels/medium`` presets hold.

The paper fits 1,000-odd comment clusters on 20M of 270M posts. With fewer posts, K-means needs fewer
clusters to keep each one populated (here: about 30 comments or more per comment cluster, 30 posts per
reaction cluster), and a larger share of the posts held out to fit them; with only a few thousand posts,
the held-out posts are labelled too, so that no image is left without targets.
"""

from typing import Any, Dict, NamedTuple


class LabelSizes(NamedTuple):
    """The label job's size settings for a number of posts (``config.labels.*``)."""

    preset: str  # the config that holds them
    fit_fraction: float
    comments_k: int
    reactions_k: int
    label_fit_subset: bool

    def overrides(self) -> str:
        """The command-line overrides that set them."""
        return (
            f"config.labels.fit_fraction={self.fit_fraction} config.labels.comments.k={self.comments_k} "
            f"config.labels.reactions.k={self.reactions_k} "
            f"config.labels.label_fit_subset={str(self.label_fit_subset).lower()}"
        )


#: (most posts it suits, settings), smallest first; above the last bound the paper's settings (defaults.yaml)
SIZES = (
    (20_000, LabelSizes("labels/small", 0.3, 64, 8, True)),  # about 1k posts
    (500_000, LabelSizes("labels/medium", 0.1, 256, 16, False)),  # about 100k posts
)
PAPER = LabelSizes("the defaults", 0.074, 1000, 16, False)  # 1M posts and more


def suggested_sizes(num_posts: int) -> LabelSizes:
    """The settings for about ``num_posts`` posts."""
    for most, sizes in SIZES:
        if num_posts <= most:
            return sizes
    return PAPER


def size_hint(num_posts: int) -> str:
    """A sentence for an error: the preset and overrides for ``num_posts`` posts."""
    sizes = suggested_sizes(num_posts)
    preset = f"config={sizes.preset}, or " if sizes is not PAPER else ""
    return f"for about {num_posts:,} posts use {preset}{sizes.overrides()} (docs: labels, 'How many clusters')"


def describe_sizes() -> Dict[str, Any]:
    """The table of the docs: posts -> settings."""
    rows = {f"up to {most:,}": sizes._asdict() for most, sizes in SIZES}
    rows["more"] = PAPER._asdict()
    return rows
