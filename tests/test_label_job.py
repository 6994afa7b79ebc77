"""The sharded label job: shards, resume after a kill, submitit, the store's files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, tiny_generator

from vise_plugin.errors import ConfigError, InputError
from vise_plugin.labels import LabelStore
from vise_plugin.labels.job import (
    BadRecordReport,
    iter_records,
    plan_shards,
    read_shard,
)
from vise_plugin.labels.job.interop import dominant_comment_clusters
from vise_plugin.labels.npy_appender import NpyAppender


def _files(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


@pytest.mark.parametrize("shard_bytes", [1, 700, 4096, 1 << 30])
def test_shards_own_every_line_once_and_report_absolute_line_numbers(tmp_path, shard_bytes):
    lines = [json.dumps({"id": f"p{i}", "image": "x.jpg", "comments": ["é" * (i % 7 + 1)]}) for i in range(60)]
    lines[41] = '{"id": broken'
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shards = plan_shards([str(path)], shard_bytes)
    bad = BadRecordReport()
    ids = [r.id for s in shards for r in read_shard(s, bad)]
    assert ids == [f"p{i}" for i in range(60) if i != 41]
    assert bad.examples["malformed_json"] == [f"{path}:42: malformed JSON (Expecting value)"]


def test_npy_appender_writes_a_standard_npy(tmp_path):
    path = str(tmp_path / "a.npy")
    appender = NpyAppender(path, np.int32, (2,))
    blocks = [np.arange(6).reshape(3, 2), np.zeros((0, 2)), np.arange(4).reshape(2, 2) * 7]
    for block in blocks:
        appender.append(block)
    appender.close()
    loaded = np.load(path, mmap_mode="r")
    assert loaded.dtype == np.int32 and np.array_equal(loaded, np.concatenate(blocks))


KILL_AT = {
    # mid-shard: part of shard 2's rows are on disk when the process dies
    "assign": ("vise_plugin.labels.store", "LabelStoreWriter", "append", "'shard_00002' in self.folder"),
    # while the final store is being written
    "merge": ("vise_plugin.labels.store", "LabelStoreWriter", "append_from", "True"),
}


@pytest.mark.faults
@pytest.mark.parametrize("where", sorted(KILL_AT))
def test_killed_job_reruns_to_a_byte_identical_store(tiny_world, tmp_path, where):
    module, cls, method, condition = KILL_AT[where]
    out = str(tmp_path / "labels")
    script = f"""
import os, signal, sys
sys.path[:0] = [{os.path.join(ROOT, "tests")!r}, {ROOT!r}]
from conftest import tiny_generator
import {module} as m
original = m.{cls}.{method}
def dying(self, *args, **kwargs):
    original(self, *args, **kwargs)
    if {condition}:
        os.kill(os.getpid(), signal.SIGKILL)
m.{cls}.{method} = dying
tiny_generator({out!r}).run({tiny_world["posts"]!r}, {out!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not os.path.exists(out)
    done = sorted(n for n in os.listdir(out + ".work/assign") if not n.endswith(".tmp"))
    stamps = {n: os.stat(os.path.join(out + ".work/assign", n, "meta.json")).st_mtime_ns for n in done}
    assert len(done) == (2 if where == "assign" else 5)
    pipeline = tiny_generator(out)
    pipeline.keep_work_dir = True
    pipeline.run(tiny_world["posts"], out)
    assert stamps == {n: os.stat(os.path.join(out + ".work/assign", n, "meta.json")).st_mtime_ns for n in done}
    assert _files(out) == _files(tiny_world["labels"])


def test_rerun_with_other_settings_refuses_the_unfinished_work(tiny_world, tmp_path):
    out = str(tmp_path / "labels")
    os.makedirs(out + ".work")
    tiny_generator(out).settings.work.check_plan({"settings": {"seed": 0}})
    with open(out + ".work/select/shard_00000.json", "w") as f:  # a finished step, done with those settings
        f.write("{}")
    with pytest.raises(
        ConfigError,
        match=r"plan.json: an unfinished label job with other settings is here "
        r"\(config.labels.chunk_size: \(unset\) here, 16 now; ",
    ):
        tiny_generator(out).run(tiny_world["posts"], out)


def test_a_job_that_finished_no_step_reruns_with_new_settings(tiny_world, tmp_path):
    lines = open(tiny_world["posts"]).read().splitlines()
    lines[3] = lines[3][:40]
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "labels")
    with pytest.raises(InputError, match=r"posts.jsonl:4: malformed JSON"):  # in the only shard: no step finished
        tiny_generator(out, shard_bytes=1 << 30).run(str(posts), out)
    assert os.listdir(out + ".work/select") == ["shard_00000.jsonl.tmp"]
    meta = tiny_generator(out, shard_bytes=1 << 30, skip_bad_records=True).run(str(posts), out)
    assert meta["bad_records"]["counts"] == {"empty_post": 1, "malformed_json": 1} and not os.path.exists(out + ".work")


def test_rerun_after_a_failed_fit_takes_a_fixed_k_and_names_any_other_change(tiny_world, tmp_path):
    from conftest import TINY_LABELS

    out = str(tmp_path / "labels")
    with pytest.raises(ConfigError, match="cannot fit k=5000 clusters"):  # after every shard's selection is done
        tiny_generator(out, comments={**TINY_LABELS["comments"], "k": 5000}).run(tiny_world["posts"], out)
    with pytest.raises(ConfigError) as refused:  # the seed chose the finished selection: it cannot change
        tiny_generator(out, seed=1).run(tiny_world["posts"], out)
    assert "(config.labels.comments.k: 5000 here, 8 now; config.labels.seed: 0 here, 1 now)" in str(refused.value)
    tiny_generator(out).run(tiny_world["posts"], out)  # k is read by the fit alone, which has not run
    assert _files(out) == _files(tiny_world["labels"])


def test_finished_store_is_not_redone(tiny_world, tmp_path):
    out = str(tmp_path / "labels")
    tiny_generator(out).run(tiny_world["posts"], out)
    stamp = os.stat(os.path.join(out, "reactions.npy")).st_mtime_ns
    tiny_generator(out).run(tiny_world["posts"], out)
    assert os.stat(os.path.join(out, "reactions.npy")).st_mtime_ns == stamp and not os.path.exists(out + ".work")


def test_submitit_array_job_on_the_local_executor(tiny_world, tmp_path):
    out = str(tmp_path / "labels")
    slurm = {
        "use_slurm": True,
        "cluster": "local",
        "name": "vise_test",
        "time_minutes": 10,
        "mem_gb": 2,
        "cpus_per_task": 1,
        "array_parallelism": 2,
        "log_folder": None,
    }
    pipeline = tiny_generator(out, slurm=slurm, shard_bytes=1_000_000)  # 1 shard: select, fit and assign jobs
    pipeline.keep_work_dir = True
    pipeline.run(tiny_world["posts"], out)
    logs = os.listdir(out + ".work/logs")
    assert sum(name.isdigit() for name in logs) == 3
    for a, b in zip(_files(out).items(), _files(tiny_world["labels"]).items()):
        if a[0] != "meta.json":  # meta.json records the other shard layout
            assert a == b


def test_store_meta_checksums_report_and_interop(tiny_world):
    store = LabelStore(tiny_world["labels"])
    meta = store.meta
    assert meta["format_version"] == 2 and meta["num_posts"] == len(store) == meta["counts"]["labelled"] == 90
    assert meta["tasks"] == {
        "comments": {"k": 8},
        "reactions": {"k": 4, "types": ["haha", "sorry", "angry", "wow", "love"]},
    }
    assert set(meta["labeler"]["checksums"]) == {"comments_encoder", "comments_centroids", "reactions_centroids"}
    assert meta["bad_records"]["counts"] == {"empty_post": 1}
    store.verify()
    report = os.path.join(tiny_world["labels"], "report")
    for name in ("comments_sizes.png", "reactions_sizes.png"):
        with open(os.path.join(report, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(report, "clusters.md")) as f:
        text = f.read()
    sizes = np.bincount(np.asarray(store.comment_labels)[:, 0], weights=np.asarray(store.comment_labels)[:, 1])
    biggest = int(np.argmax(sizes))
    assert f"| {biggest} | {int(sizes[biggest])} |" in text and text.count("\n| ") == 8 + 4 + 2
    images = np.load(os.path.join(tiny_world["labels"], "interop", "train_images.npy"))
    comments = np.load(os.path.join(tiny_world["labels"], "interop", "train_comments_labels.npy"))
    reactions = np.load(os.path.join(tiny_world["labels"], "interop", "train_reactions_labels.npy"))
    assert len(images) == len(comments) == len(reactions) == 90
    assert images[5] == os.path.join(meta["image_root"], store.images[5]) and np.array_equal(reactions, store.reactions)
    for i in range(90):
        pairs = store.comment_pairs(i)
        expected = -1 if not len(pairs) else int(pairs[np.lexsort((pairs[:, 0], -pairs[:, 1]))[0], 0])
        assert comments[i] == expected
    assert np.array_equal(dominant_comment_clusters(store, 10, 20), comments[10:20])


def test_damaged_store_fails_verification(tiny_world, tmp_path):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(tiny_world["labels"], copy)
    with open(os.path.join(copy, "reactions.npy"), "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\x07")
    with pytest.raises(InputError, match="reactions.npy: sha256 differs"):
        LabelStore(copy).verify()


@pytest.mark.faults
def test_skip_mode_counts_bad_lines_across_shards(tiny_world, tmp_path):
    lines = open(tiny_world["posts"]).read().splitlines()
    lines[3] = lines[3][:40]
    lines[80] = lines[80].replace('"love": ', '"love": -')
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "labels")
    with pytest.raises(InputError, match=r"posts.jsonl:4: malformed JSON"):
        tiny_generator(out).run(str(posts), out)
    import shutil

    shutil.rmtree(out + ".work")
    meta = tiny_generator(out, skip_bad_records=True).run(str(posts), out)
    assert meta["bad_records"]["counts"] == {"bad_reactions": 1, "empty_post": 1, "malformed_json": 1}
    assert meta["counts"]["posts_read"] == 117
    assert sum(1 for _ in iter_records(str(posts), BadRecordReport())) == 117
