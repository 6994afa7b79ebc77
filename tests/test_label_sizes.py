"""Labels for a small dataset: the error that names the settings to use, the labels/small preset, and
labels for the held-out posts when asked."""

import json
import os
import re
import shutil

import pytest

from vise_plugin.cli import main_generate_labels
from vise_plugin.demo.world import generate_posts
from vise_plugin.labels import LabelStore
from vise_plugin.labels.job.pipeline import LabelPipeline
from vise_plugin.labels.sizes import PAPER, suggested_sizes


@pytest.fixture(scope="module")
def thousand_posts(tmp_path_factory):
    """1,000 posts of the demo world (about 8% without comments), without images."""
    return generate_posts(str(tmp_path_factory.mktemp("posts")), 1000, seed=3, images=False)


def _labels(posts, out, *overrides):
    return main_generate_labels(
        [f"config.labels.posts={posts}", f"config.data.labels={out}", "config.labels.num_workers=1", *overrides]
    )


def test_the_papers_k_on_a_thousand_posts_fails_in_one_line_naming_the_settings_to_use(
    thousand_posts, tmp_path, capsys
):
    assert _labels(thousand_posts, tmp_path / "labels", "config=labels/vise_1m") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert error.startswith("error: cannot fit k=1000 clusters on ")
    assert re.search(r"\(\d+ held out of 992 posts\); for about 992 posts use config=labels/small, or ", error)
    assert "config.labels.fit_fraction=0.3 config.labels.comments.k=64 config.labels.reactions.k=8" in error
    assert "config.labels.label_fit_subset=true" in error
    work = f"{tmp_path / 'labels'}.work"
    assert error.endswith(f"; delete {work} first (its fitting subset was chosen with fit_fraction=0.074)")
    assert _labels(thousand_posts, tmp_path / "labels", "config=labels/small") == 2  # as the error says
    assert "label_fit_subset" in capsys.readouterr().err
    shutil.rmtree(work)
    assert _labels(thousand_posts, tmp_path / "labels", "config=labels/small") == 0


def test_the_small_preset_labels_every_post_with_targets(thousand_posts, tmp_path):
    out = tmp_path / "labels"
    assert _labels(thousand_posts, out, "config=labels/small") == 0
    store = LabelStore(str(out))
    with open(thousand_posts) as f:
        with_engagement = sum(
            1 for line in f if json.loads(line)["comments"] or any(json.loads(line)["reactions"].values())
        )
    assert len(store) == with_engagement == store.meta["counts"]["posts_read"] == 992
    assert store.meta["counts"]["held_out"] == 0
    assert store.meta["fit_subset"]["labelled"] is True and store.meta["fit_subset"]["num_posts"] > 200
    assert store.meta["tasks"]["comments"]["k"] == 64 and store.meta["tasks"]["reactions"]["k"] == 8
    held_out = set(open(os.path.join(out, "model", "fit_subset_ids.txt")).read().split())
    assert held_out <= {store.ids[i] for i in range(len(store))}


def test_without_the_option_the_held_out_posts_get_no_labels_and_the_others_the_same(thousand_posts, tmp_path):
    everything, paper = tmp_path / "all", tmp_path / "paper"
    assert _labels(thousand_posts, everything, "config=labels/small") == 0
    assert _labels(thousand_posts, paper, "config=labels/small", "config.labels.label_fit_subset=false") == 0
    every, some = LabelStore(str(everything)), LabelStore(str(paper))
    held_out = set(open(os.path.join(paper, "model", "fit_subset_ids.txt")).read().split())
    assert some.meta["counts"]["held_out"] == len(held_out) and some.meta["fit_subset"]["labelled"] is False
    assert len(some) == len(every) - len(held_out)
    rows = {every.ids[i]: i for i in range(len(every))}
    for i in range(len(some)):
        assert some.ids[i] not in held_out
        j = rows[some.ids[i]]
        assert int(some.reactions[i]) == int(every.reactions[j])
        assert (some.comment_histogram(i) == every.comment_histogram(j)).all()


def test_the_setting_left_false_keeps_the_digest_of_stores_written_before_it():
    from vise_plugin.config import compose_config

    labels_cfg = compose_config(
        ["config=labels/vise_1m", "config.labels.posts=x.jsonl", "config.data.labels=out"]
    ).config.labels
    assert "label_fit_subset" not in LabelPipeline.from_config(labels_cfg, None, "out")._settings()
    asked = compose_config(["config=labels/small", "config.labels.posts=x.jsonl", "config.data.labels=out"])
    assert LabelPipeline.from_config(asked.config.labels, None, "out")._settings()["label_fit_subset"] is True


@pytest.mark.parametrize(
    "posts, preset", [(1_000, "labels/small"), (20_000, "labels/small"), (100_000, "labels/medium"), (2_000_000, None)]
)
def test_suggested_sizes_by_number_of_posts(posts, preset):
    sizes = suggested_sizes(posts)
    assert (sizes.preset if sizes is not PAPER else None) == preset
