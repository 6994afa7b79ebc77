import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import vise_plugin  # noqa: E402,F401  (registers components)
from vise_plugin.demo.world import generate_posts  # noqa: E402
from vise_plugin.labels import LabelGenerator  # noqa: E402

TINY_LABELS = {
    "comments": {"k": 8, "algorithm": "minibatch", "tfidf": {"max_features": 500, "min_df": 1}},
    "reactions": {"k": 4, "algorithm": "full"},
}


def tiny_generator(seed: int = 0, **kwargs) -> LabelGenerator:
    return LabelGenerator(TINY_LABELS["comments"], TINY_LABELS["reactions"], fit_fraction=0.25, seed=seed,
                          chunk_size=50, **kwargs)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """120 synthetic posts with 32 px images and a label store of the 90 not held out."""
    folder = str(tmp_path_factory.mktemp("world"))
    posts = generate_posts(folder, 120, seed=0)
    labels = os.path.join(folder, "labels")
    tiny_generator().run(posts, labels)
    return {"folder": folder, "posts": posts, "labels": labels}
