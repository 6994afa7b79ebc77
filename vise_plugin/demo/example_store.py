"""A small label store of synthetic posts, for the examples and for trying the reuse API without data."""

import os

from vise_plugin.demo.world import generate_posts


def example_store(labels: str, num_posts: int = 256, seed: int = 0) -> str:
    """Writes ``num_posts`` synthetic posts with 32 px images into ``<labels>_world`` and labels them with the
    ``labels/small`` preset into the store folder ``labels``, unless that store exists; returns ``labels``.

    The store's image root is ``<labels>_world`` and its image paths ``images/<n>.jpg``.
    """
    from vise_plugin.config import compose_config
    from vise_plugin.labels.job.pipeline import run_label_job

    if os.path.exists(os.path.join(labels, "meta.json")):
        return labels
    posts = generate_posts(labels.rstrip("/") + "_world", num_posts, seed=seed)
    overrides = [f"config.labels.posts={posts}", f"config.data.labels={labels}", "config.labels.num_workers=1"]
    run_label_job(compose_config(["config=labels/small", *overrides]).config)
    return labels
