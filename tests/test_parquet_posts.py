"""Parquet posts (LAION-, DataComp- or Hugging Face-style tables) in the label job, read through a
column mapping, and reaction types other than the paper's five."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import tiny_generator

from vise_plugin.errors import ConfigError, InputError
from vise_plugin.labels import LabelStore
from vise_plugin.labels.job import BadRecordReport, iter_records, plan_shards, read_shard
from vise_plugin.labels.records import REACTION_TYPES

COLUMNS = {
    "id": "uid",
    "image": "file_name",
    "comments": "replies",
    "reactions": {name: f"n_{name}" for name in REACTION_TYPES},
}


def _table(posts_jsonl, **edits):
    rows = [json.loads(line) for line in open(posts_jsonl, encoding="utf-8")]
    columns = {
        "uid": [r["id"] for r in rows],
        "file_name": [r["image"] for r in rows],
        "replies": [r.get("comments") or None for r in rows],
        **{f"n_{name}": [r.get("reactions", {}).get(name) for r in rows] for name in REACTION_TYPES},
        "caption": ["unused"] * len(rows),
    }
    for key, (index, value) in edits.items():
        columns[key][index] = value
    return pa.table(columns)


def _same_store(a, b):
    assert list(a.ids) == list(b.ids) and list(a.images) == list(b.images)
    assert np.array_equal(np.asarray(a.reactions), np.asarray(b.reactions))
    assert all(np.array_equal(a.comment_pairs(i), b.comment_pairs(i)) for i in range(len(a)))


def test_parquet_posts_with_a_column_mapping_label_as_their_jsonl_does(tiny_world, tmp_path):
    path = str(tmp_path / "posts.parquet")
    pq.write_table(_table(tiny_world["posts"]), path, row_group_size=25)
    output = str(tmp_path / "labels")
    pipeline = tiny_generator(output, shard_bytes=2000)
    pipeline.columns = COLUMNS
    meta = pipeline.run(path, output, image_root=tiny_world["folder"])
    assert meta["num_shards"] > 1  # cut at row groups
    _same_store(LabelStore(output), LabelStore(tiny_world["labels"]))


def test_a_bad_parquet_row_is_named_by_file_and_row_and_counted_when_skipped(tiny_world, tmp_path):
    path = str(tmp_path / "posts.parquet")
    pq.write_table(_table(tiny_world["posts"], n_love=(37, -2)), path, row_group_size=25)
    shards = plan_shards([path], 1 << 30, COLUMNS)
    with pytest.raises(InputError, match=r"posts.parquet:row 38: reaction 'love' must be a whole count >= 0, got -2"):
        list(read_shard(shards[0], skip=()))
    bad, from_jsonl = BadRecordReport(), BadRecordReport()
    expected = len(list(iter_records(tiny_world["posts"], from_jsonl))) - 1
    assert len(list(read_shard(shards[0], bad))) == expected
    assert bad.counts == {**from_jsonl.counts, "bad_reactions": 1}


def test_a_mapping_to_a_missing_column_or_field_stops_in_one_line(tiny_world, tmp_path):
    path = str(tmp_path / "posts.parquet")
    pq.write_table(_table(tiny_world["posts"]), path)
    with pytest.raises(InputError, match=r"posts.parquet: no column 'id' \(config.labels.columns maps"):
        list(read_shard(plan_shards([path], 1 << 30)[0]))
    with pytest.raises(ConfigError, match=r"^config.labels.columns.caption: unknown field; map id, image"):
        plan_shards([path], 1 << 30, {"caption": "caption"})


def test_reaction_types_other_than_the_five_are_clustered_and_recorded(tiny_world, tmp_path):
    rows = [json.loads(line) for line in open(tiny_world["posts"], encoding="utf-8")]
    types = ["up", "down", "replies"]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "image": [r["image"] for r in rows],
            "comments": [r.get("comments") or [] for r in rows],
            "reactions": [
                {"up": 1 + i % 5, "down": i % 3, "replies": len(r.get("comments") or [])} for i, r in enumerate(rows)
            ],
        }
    )
    path = str(tmp_path / "posts.parquet")
    pq.write_table(table, path)
    output = str(tmp_path / "labels")
    pipeline = tiny_generator(output, reactions={"k": 4, "algorithm": "full", "types": types})
    meta = pipeline.run(path, output, image_root=tiny_world["folder"])
    assert meta["tasks"]["reactions"] == {"k": 4, "types": types}
    assert (np.asarray(LabelStore(output).reactions) >= 0).all()
    report = open(f"{output}/report/clusters.md", encoding="utf-8").read()
    reactions_part = report.split("## Reaction clusters")[1]
    assert "up 0." in reactions_part and not any(name in reactions_part for name in REACTION_TYPES)
    with pytest.raises(InputError, match=r"unknown reaction 'up'; expected one of haha"):
        list(read_shard(plan_shards([path], 1 << 30)[0]))


def test_the_column_mapping_is_given_on_the_command_line():
    from omegaconf import OmegaConf

    from vise_plugin.config import compose_config
    from vise_plugin.labels.job.parquet_posts import column_mapping

    cfg = compose_config(["config=demo/vise_tiny", "config.labels.columns={id: uid, reactions: {love: n_love}}"])
    assert column_mapping(OmegaConf.to_container(cfg.config.labels.columns)) == {
        "id": "uid",
        "image": "image",
        "comments": "comments",
        "reactions": {"love": "n_love"},
    }
