import json
import os

import numpy as np
import pytest

from conftest import tiny_generator
from vise_plugin.data import EngagementRecord, LabelStore, iter_records
from vise_plugin.errors import InputError
from vise_plugin.labels import EngagementLabeler, sample_comments


def _arrays(folder):
    store = LabelStore(folder)
    return [np.asarray(a) for a in (store.comment_offsets, store.comment_labels, store.reactions)] + [
        [store.ids[i] for i in range(len(store))]
    ]


def test_same_seed_same_labels(tiny_world, tmp_path):
    again = str(tmp_path / "again")
    tiny_generator(seed=0).run(tiny_world["posts"], again)
    for a, b in zip(_arrays(tiny_world["labels"]), _arrays(again)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_held_out_posts_are_never_labelled_for_pretraining(tiny_world):
    store = LabelStore(tiny_world["labels"])
    with open(os.path.join(tiny_world["labels"], "model", "fit_subset_ids.txt")) as f:
        held_out = set(f.read().split())
    labelled = {store.ids[i] for i in range(len(store))}
    all_ids = {r.id for _, r in iter_records(tiny_world["posts"])}
    assert len(held_out) == store.meta["fit_subset"]["num_posts"] == 30
    assert not held_out & labelled and held_out | labelled == all_ids


def test_other_seed_holds_out_other_posts(tiny_world, tmp_path):
    other = str(tmp_path / "other")
    tiny_generator(seed=1).run(tiny_world["posts"], other)
    assert _arrays(other)[3] != _arrays(tiny_world["labels"])[3]


def test_labels_are_valid_and_saved_model_relabels_identically(tiny_world):
    store = LabelStore(tiny_world["labels"])
    assert store.num_classes("comments") == 8 and store.num_classes("reactions") == 4
    assert np.asarray(store.comment_labels)[:, 0].max() < 8 and np.asarray(store.reactions).max() < 4
    assert (np.asarray(store.reactions) == -1).any()  # the world has posts without reactions
    labeler = EngagementLabeler.load(os.path.join(tiny_world["labels"], "model"))
    records = {r.id: r for _, r in iter_records(tiny_world["posts"])}
    pairs, reactions = labeler.label([records[store.ids[i]] for i in range(len(store))])
    assert np.array_equal(reactions, np.asarray(store.reactions))
    for i, p in enumerate(pairs):
        assert np.array_equal(p, store.comment_pairs(i))


def test_comment_sampling_is_capped_and_seeded():
    record = EngagementRecord("p", "x.jpg", [f"comment {i}" for i in range(250)], {})
    a = sample_comments(record, 100, seed=3)
    assert len(a) == 100 and a == sample_comments(record, 100, seed=3)
    assert a != sample_comments(record, 100, seed=4)


def test_bad_record_names_file_and_line(tmp_path):
    path = tmp_path / "posts.jsonl"
    good = json.dumps({"id": "a", "image": "a.jpg", "comments": ["x"], "reactions": {"love": 1}})
    path.write_text(good + "\n" + json.dumps({"id": "b", "image": "b.jpg", "reactions": {"love": -2}}) + "\n")
    with pytest.raises(InputError, match=r"posts.jsonl:2: reaction 'love'"):
        list(iter_records(str(path)))
    bad = []
    assert [r.id for _, r in iter_records(str(path), skip_bad=True, bad=bad)] == ["a"] and len(bad) == 1


def test_generate_labels_command_line(tiny_world, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "store"
    args = [sys.executable, os.path.join(ROOT, "tools", "generate_labels.py"), "config=demo/vise_tiny",
            f"config.data.posts={tiny_world['posts']}", f"config.data.labels={out}", "config.labels.comments.k=5",
            "config.labels.reactions.k=3", "config.labels.fit_fraction=0.3"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = LabelStore(str(out))
    assert len(store) == 84 and store.num_classes("comments") == 5
    missing = subprocess.run(args[:3], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: no engagement file")
