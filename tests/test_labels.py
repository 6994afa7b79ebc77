import json
import os

import numpy as np
import pytest
from conftest import TINY_LABELS, tiny_generator

from vise_plugin.errors import InputError
from vise_plugin.labels import (
    EngagementLabeler,
    EngagementRecord,
    LabelStore,
    sample_comments,
)
from vise_plugin.labels.job import BadRecordReport, fit_score, iter_records


def _arrays(folder):
    store = LabelStore(folder)
    return [np.asarray(a) for a in (store.comment_offsets, store.comment_labels, store.reactions)] + [
        [store.ids[i] for i in range(len(store))]
    ]


def test_same_seed_same_labels_whatever_the_sharding(tiny_world, tmp_path):
    again = str(tmp_path / "again")
    tiny_generator(again, seed=0, shard_bytes=1 << 30).run(tiny_world["posts"], again)  # one shard instead of five
    assert LabelStore(again).meta["num_shards"] == 1 and LabelStore(tiny_world["labels"]).meta["num_shards"] == 5
    for a, b in zip(_arrays(tiny_world["labels"]), _arrays(again)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_held_out_posts_are_never_labelled_for_pretraining(tiny_world):
    store = LabelStore(tiny_world["labels"])
    with open(os.path.join(tiny_world["labels"], "model", "fit_subset_ids.txt")) as f:
        held_out = set(f.read().split())
    labelled = {store.ids[i] for i in range(len(store))}
    all_ids = {r.id for r in iter_records(tiny_world["posts"], BadRecordReport())}  # empty posts left out
    assert held_out == {i for i in all_ids if fit_score(i, 0) < 0.25}
    assert len(held_out) == store.meta["fit_subset"]["num_posts"] == store.meta["counts"]["held_out"]
    assert not held_out & labelled and held_out | labelled == all_ids


def test_other_seed_holds_out_other_posts(tiny_world, tmp_path):
    other = str(tmp_path / "other")
    tiny_generator(other, seed=1).run(tiny_world["posts"], other)
    assert _arrays(other)[3] != _arrays(tiny_world["labels"])[3]


def test_fit_max_posts_keeps_the_lowest_scores(tiny_world, tmp_path):
    out = str(tmp_path / "capped")
    meta = tiny_generator(out, fit_max_posts=10).run(tiny_world["posts"], out)
    with open(os.path.join(out, "model", "fit_subset_ids.txt")) as f:
        held_out = f.read().split()
    scores = sorted(fit_score(r.id, 0) for r in iter_records(tiny_world["posts"], BadRecordReport()))
    assert len(held_out) == meta["fit_subset"]["num_posts"] == 10
    assert max(fit_score(i, 0) for i in held_out) == scores[9] and meta["fit_subset"]["threshold"] == scores[10]
    assert meta["counts"]["labelled"] == len(scores) - 10  # posts above the cap are pretrained on


def test_labels_are_valid_and_saved_model_relabels_identically(tiny_world):
    store = LabelStore(tiny_world["labels"])
    assert store.num_classes("comments") == 8 and store.num_classes("reactions") == 4
    assert np.asarray(store.comment_labels)[:, 0].max() < 8 and np.asarray(store.reactions).max() < 4
    assert (np.asarray(store.reactions) == -1).any()  # the world has posts without reactions
    labeler = EngagementLabeler.load(os.path.join(tiny_world["labels"], "model"))
    records = {r.id: r for r in iter_records(tiny_world["posts"], BadRecordReport())}
    pairs, reactions = labeler.label([records[store.ids[i]] for i in range(len(store))])
    assert np.array_equal(reactions, np.asarray(store.reactions))
    for i, p in enumerate(pairs):
        assert np.array_equal(p, store.comment_pairs(i))


def test_comment_sampling_is_capped_and_seeded():
    record = EngagementRecord("p", "x.jpg", [f"comment {i}" for i in range(250)], {})
    a = sample_comments(record, 100, seed=3)
    assert len(a) == 100 and a == sample_comments(record, 100, seed=3)
    assert a != sample_comments(record, 100, seed=4)


BAD_LINES = {
    "malformed_json": '{"id": "b", "image": ',
    "not_an_object": '["b", "b.jpg"]',
    "missing_field": '{"image": "b.jpg", "comments": ["x"]}',
    "bad_comments": '{"id": "b", "image": "b.jpg", "comments": ["x", 3]}',
    "bad_reactions": '{"id": "b", "image": "b.jpg", "reactions": {"love": -2}}',
    "empty_post": '{"id": "b", "image": "b.jpg", "comments": [" "], "reactions": {"love": 0}}',
}


@pytest.mark.faults
@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_each_kind_of_bad_line_names_file_and_line(tmp_path, kind):
    path = tmp_path / "posts.jsonl"
    good = json.dumps({"id": "a", "image": "a.jpg", "comments": ["x"], "reactions": {"love": 1}})
    path.write_text(good + "\n\n" + BAD_LINES[kind] + "\n" + good.replace('"a"', '"c"') + "\n")
    with pytest.raises(InputError, match=r"posts.jsonl:3: "):
        list(iter_records(str(path)))
    bad = BadRecordReport()
    assert [r.id for r in iter_records(str(path), bad)] == ["a", "c"]
    assert bad.counts == {kind: 1} and bad.examples[kind][0].startswith(f"{path}:3: ")


@pytest.mark.parametrize("count", [2.5, float("nan"), "3", True])
def test_reaction_counts_must_be_whole_finite_numbers(tmp_path, count):
    path = tmp_path / "posts.jsonl"
    path.write_text(json.dumps({"id": "a", "image": "a.jpg", "reactions": {"wow": count}}) + "\n")
    with pytest.raises(InputError, match=r"posts.jsonl:1: reaction 'wow' must be a whole count"):
        list(iter_records(str(path)))


def test_generate_labels_command_line(tiny_world, tmp_path, capsys):
    import subprocess
    import sys

    from conftest import ROOT

    from vise_plugin.cli import generate_labels, run_cli

    out = tmp_path / "store"
    args = [
        sys.executable,
        os.path.join(ROOT, "tools", "generate_labels.py"),
        "config=demo/vise_tiny",
        f"config.data.posts={tiny_world['posts']}",
        f"config.data.labels={out}",
        "config.labels.comments.k=5",
        "config.labels.reactions.k=3",
        "config.labels.fit_fraction=0.3",
        "config.labels.num_workers=1",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = LabelStore(str(out))
    assert store.meta["counts"]["posts_read"] == 119 and store.num_classes("comments") == 5
    assert "3/3 assigning labels" in proc.stderr and "1 empty post line(s)" in proc.stdout + proc.stderr
    # the same run_cli(generate_labels) call as tools/generate_labels.py, in this process
    assert run_cli(generate_labels, args[2:3]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no engagement file")
    assert (
        run_cli(
            generate_labels,
            args[2:4]
            + [
                f"config.data.labels={tmp_path / 'strict'}",
                "config.labels.on_empty_post=fail",
                "config.labels.num_workers=1",
            ],
        )
        == 2
    )
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(f"error: {tiny_world['posts']}:103: post 'post000102' has no")
    )


def test_a_refit_into_the_same_folder_in_one_process_labels_with_the_new_model(tiny_world, tmp_path):
    out = str(tmp_path / "labels")
    tiny_generator(out).run(tiny_world["posts"], out)  # one worker: every step in this process
    assert np.asarray(LabelStore(out).comment_labels)[:, 0].max() >= 3
    tiny_generator(out, comments={**TINY_LABELS["comments"], "k": 3}).run(tiny_world["posts"], out)
    store = LabelStore(out)
    assert store.num_classes("comments") == 3 and np.asarray(store.comment_labels)[:, 0].max() == 2
    labeler = EngagementLabeler.load(os.path.join(out, "model"))
    records = {r.id: r for r in iter_records(tiny_world["posts"], BadRecordReport())}
    pairs, _ = labeler.label([records[store.ids[i]] for i in range(len(store))])
    assert all(np.array_equal(p, store.comment_pairs(i)) for i, p in enumerate(pairs))
