"""Pretraining straight from img2dataset's WebDataset output: samples joined to the label store by post
id, failed, unlabelled and damaged ones counted and skipped, indexes cached per tar and label store."""

import io
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT

from vise_plugin.data import img2dataset_shards, open_files
from vise_plugin.data.img2dataset_shards import Img2DatasetShards
from vise_plugin.data.target_sources import EngagementLabels
from vise_plugin.errors import ConfigError, InputError
from vise_plugin.labels import LabelStore
from vise_plugin.labels.store import LabelStoreWriter
from vise_plugin.registry import TARGET_SOURCES

KEPT_PER_TAR = 10
#: what the folder of :func:`img2dataset_folder` holds besides the kept samples
COUNTS = {
    "tars": 2,
    "kept": 20,
    "in_tar": 25,
    "failed": 4,
    "unlabelled": 2,
    "no_image": 1,
    "unreadable": 1,
    "truncated": 0,
}


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1_700_000_000
    archive.addfile(info, io.BytesIO(data))


def write_img2dataset_tar(tar: str, samples: list) -> None:
    """``samples``: ``(key, {extension: bytes})`` in tar order, as img2dataset writes them."""
    with tarfile.open(tar, "w") as archive:
        for key, members in samples:
            for ext, data in members.items():
                _add(archive, f"{key}.{ext}", data)


def _description(key: str, post_id=None, status: str = "success") -> bytes:
    meta = {
        "url": f"http://example.com/{key}.jpg",
        "key": key,
        "status": status,
        "error_message": None,
        "width": 32,
        "height": 32,
    }
    if post_id is not None:
        meta["post_id"] = post_id
    return json.dumps(meta).encode()


def img2dataset_folder(store: LabelStore, folder: str) -> dict:
    """Two tars in img2dataset's layout holding store rows 0..19 (10 each, by post id), and besides: in
    ``00000.tar`` a post the store lacks, a description without an id and one without its image, beside
    ``00000.parquet`` with 3 failed rows; in ``00001.tar`` (no parquet) a sample whose description says it
    failed and one whose description is not JSON. Returns ``{store row: (tar, key)}`` of the kept samples."""
    os.makedirs(folder, exist_ok=True)
    kept = {}

    def image(row):
        with open(os.path.join(store.meta["image_root"], store.images[row]), "rb") as f:
            return f.read()

    def sample(shard, n, row):
        key = f"{shard:05d}{n:04d}"
        kept[row] = (os.path.join(folder, f"{shard:05d}.tar"), key)
        return key, {"jpg": image(row), "json": _description(key, store.ids[row]), "txt": b"a caption"}

    first = [sample(0, n, n) for n in range(KEPT_PER_TAR)]
    first[3:3] = [
        ("000000100", {"jpg": image(0), "json": _description("000000100", "not-a-post")}),
        ("000000101", {"jpg": image(1), "json": _description("000000101")}),
        ("000000102", {"json": _description("000000102", store.ids[2])}),
    ]
    write_img2dataset_tar(os.path.join(folder, "00000.tar"), first)
    statuses = ["success"] * len(first) + ["failed_to_download"] * 2 + ["failed_to_resize"]
    table = pa.table(
        {
            "url": [f"http://example.com/{i}.jpg" for i in range(len(statuses))],
            "key": [f"00000{i:04d}" for i in range(len(statuses))],
            "status": statuses,
            "post_id": [f"p{i}" for i in range(len(statuses))],
        }
    )
    pq.write_table(table, os.path.join(folder, "00000.parquet"))
    second = [sample(1, n, KEPT_PER_TAR + n) for n in range(KEPT_PER_TAR)]
    second += [
        ("000100098", {"json": _description("000100098", store.ids[5], "failed_to_resize")}),
        ("000100099", {"jpg": image(6), "json": b'{"post_id": '}),
    ]
    write_img2dataset_tar(os.path.join(folder, "00001.tar"), second)
    with open(os.path.join(folder, "00000_stats.json"), "w") as f:
        json.dump({"count": len(statuses), "successes": len(first) - 1}, f)
    return kept


@pytest.fixture(scope="module")
def world(tiny_world, tmp_path_factory):
    """The tiny world's label store and an img2dataset folder of its posts (indexes not built)."""
    folder = str(tmp_path_factory.mktemp("img2dataset") / "out")
    store = LabelStore(tiny_world["labels"])
    return {"labels": tiny_world["labels"], "store": store, "folder": folder, "kept": img2dataset_folder(store, folder)}


def _copy(world, tmp_path):
    folder = str(tmp_path / "out")
    shutil.copytree(world["folder"], folder, ignore=shutil.ignore_patterns("*.npz"))
    return folder


def test_samples_are_joined_by_post_id_and_the_others_counted(world, tmp_path, caplog):
    folder, store = _copy(world, tmp_path), world["store"]
    with caplog.at_level(logging.INFO, logger=img2dataset_shards.__name__):
        source = Img2DatasetShards(folder, store)
    assert source.counts == COUNTS and len(source) == 20 and source.groups == [10, 10]
    assert (
        f"img2dataset shards {folder}: 20 samples kept of 25 in 2 tars; 4 failed downloads, 2 without labels, "
        "1 without an image, 1 with an unreadable description skipped"
    ) in caplog.text
    reference = EngagementLabels(store, store.meta["image_root"])
    by_id = {store.ids[row]: row for row in range(len(store))}
    for i in range(len(source)):
        data, targets = source.read(i)
        row = by_id[store.ids[source.store_row(i)]]
        tar, key = world["kept"][row]
        assert source.where(i) == f"{tar.replace(world['folder'], folder)}#{key}"
        with open(os.path.join(store.meta["image_root"], store.images[row]), "rb") as f:
            assert data == f.read()
        expected = reference.targets_at(row)
        assert targets.keys() == expected.keys() and torch.equal(targets["comments"], expected["comments"])
        assert targets["comments"].dtype == torch.float32 and targets["reactions"] == expected["reactions"]
        assert source.path(i) == store.images[row] and source.row_of(source.path(i)) == i
        assert torch.equal(source.targets_for(source.path(i))["comments"], expected["comments"])
    assert not source.lists(store.images[30])  # a post no tar holds
    with pytest.raises(InputError, match=rf"^{store.images[30]}: not an image of img2dataset shards {folder} \(2 "):
        source.targets_for(store.images[30])
    assert source.specs() == reference.specs() and source.empty().keys() == reference.empty().keys()
    with np.load(source.index_path(0)) as index:
        assert index["offsets"].shape == (10, 2) and index["rows"].tolist() == list(range(10))
        assert index["keys"].tolist() == list(range(10)) and int(index["failed"]) == 3
    import webdataset as wds  # the reference reader sees the same bytes

    samples = {s["__key__"]: s for s in wds.DataPipeline(wds.SimpleShardList(source.tars), wds.tarfile_to_samples())}
    assert samples["000010004"]["jpg"] == source.read(14)[0]


def _counting(monkeypatch):
    calls = []
    original = img2dataset_shards.index_tar

    def index_tar(tar, *args):
        calls.append(os.path.basename(tar))
        return original(tar, *args)

    monkeypatch.setattr(img2dataset_shards, "index_tar", index_tar)
    return calls


def _subset_store(store, folder, rows):
    """A new label store of ``store``'s first ``rows`` rows."""
    writer = LabelStoreWriter(folder)
    writer.append_from(store, 0, rows)
    writer.close({k: v for k, v in store.meta.items() if k not in ("sha256", "num_posts", "format_version")})
    return LabelStore(folder)


def test_an_index_is_built_once_and_again_for_a_changed_tar_or_label_store(world, tmp_path, monkeypatch):
    folder, store = _copy(world, tmp_path), world["store"]
    calls = _counting(monkeypatch)
    first = Img2DatasetShards(folder, store)
    assert sorted(calls) == ["00000.tar", "00001.tar"]
    indexes = sorted(n for n in os.listdir(folder) if n.endswith(".vise.npz"))
    assert indexes == [f"0000{s}.{first.fingerprint}.vise.npz" for s in (0, 1)]
    stamps = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in indexes}
    calls.clear()
    again = Img2DatasetShards(folder, store)
    assert calls == [] and again.counts == first.counts
    assert {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in indexes} == stamps

    tar = os.path.join(folder, "00001.tar")
    with tarfile.open(tar) as archive:
        members = [(m.name, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(tar, "w") as archive:  # the tar written again without its first sample
        for name, data in members[3:]:
            _add(archive, name, data)
    changed = Img2DatasetShards(folder, store)
    assert calls == ["00001.tar"] and changed.groups == [10, 9] and changed.where(10) == f"{tar}#000010001"
    with pytest.raises(InputError, match=rf"^{tar}: its index now holds 9 samples, not 10 \(the tar changed\)$"):
        first.read(10)  # a source built before: that tar's samples are skipped
    assert first.where(10) == f"{tar}#sample 0" and len(first.read(0)[0]) > 0

    calls.clear()
    smaller = _subset_store(store, str(tmp_path / "labels"), 5)
    subset = Img2DatasetShards(folder, smaller)
    assert sorted(calls) == ["00000.tar", "00001.tar"] and subset.fingerprint != first.fingerprint
    assert subset.groups == [5, 0] and subset.counts["unlabelled"] == 2 + 5 + 9
    assert len([n for n in os.listdir(folder) if n.endswith(".vise.npz")]) == 4  # the first store's stay


def test_a_tar_cut_short_skips_the_samples_past_the_cut_and_is_reported_once(world, tmp_path, caplog):
    folder, store = _copy(world, tmp_path), world["store"]
    source = Img2DatasetShards(folder, store)
    tar = os.path.join(folder, "00000.tar")
    with np.load(source.index_path(0)) as index:
        cut = int(index["offsets"][4, 0]) + 10  # in the image of the fifth kept sample
    with open(tar, "r+b") as f:
        f.truncate(cut)
    for i in range(4):
        assert len(source.read(i)[0]) > 0
    with caplog.at_level(logging.WARNING):
        for i in range(4, 10):
            with pytest.raises(InputError, match=rf"^{tar}#00000000{i}: truncated shard$"):
                source.read(i)
    assert caplog.text.count("its remaining samples are skipped") == 1 and f"{tar}: truncated shard" in caplog.text
    assert len(source.read(10)[0]) > 0  # the other tar reads on
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reindexed = Img2DatasetShards(folder, store)  # its size changed: indexed again, up to the cut
    assert reindexed.groups == [4, 10] and reindexed.counts["truncated"] == 1
    assert f"{tar}: cut short or damaged" in caplog.text


def test_a_data_loader_worker_opens_its_own_tar_handles(world, tmp_path, monkeypatch):
    source = Img2DatasetShards(_copy(world, tmp_path), world["store"])
    expected = source.read(3)[0]
    handle = source._file(0)  # open in this process
    copy = pickle.loads(pickle.dumps(source))  # a spawned worker's copy
    assert copy._files._files == {} and copy.read(3)[0] == expected
    monkeypatch.setattr(open_files.os, "getpid", lambda: -1)  # a forked worker
    assert source._file(0) is not handle and source.read(3)[0] == expected


def test_missing_inputs_fail_in_one_line_and_indexes_go_to_the_run_folder_when_the_tars_are_read_only(
    world, tmp_path, monkeypatch
):
    source = TARGET_SOURCES.get("img2dataset")
    labels = world["labels"]
    with pytest.raises(ConfigError, match=r"^config.data.sources has img2dataset: set config.data.img2dataset="):
        source.check_inputs({}, {"labels": labels, "img2dataset": None})
    with pytest.raises(ConfigError, match=rf"^config.data.img2dataset={tmp_path}: no \*.tar in it"):
        source.check_inputs({}, {"labels": labels, "img2dataset": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"^config.data.img2dataset=s3://bucket/out: local folders only"):
        source.check_inputs({}, {"labels": labels, "img2dataset": "s3://bucket/out"})
    with pytest.raises(ConfigError, match=r"^label store not found: \(unset\)"):
        source.check_inputs({}, {"img2dataset": world["folder"]})

    folder = _copy(world, tmp_path)
    monkeypatch.setattr(img2dataset_shards.os, "access", lambda path, mode: path != folder)
    run_dir = str(tmp_path / "run")
    built = source.from_config({"id_column": "post_id"}, {"labels": labels, "img2dataset": folder}, run_dir)
    assert len(built) == 20 and os.path.dirname(built.index_path(0)) == os.path.join(run_dir, "img2dataset_index")
    assert not [n for n in os.listdir(folder) if n.endswith(".npz")]
    with pytest.raises(ConfigError, match=r"^config.data.img2dataset_index: .* is not writable"):
        Img2DatasetShards(folder, world["store"])


def test_a_run_pretrains_from_the_img2dataset_folder_and_ends_with_a_checkpoint(world, tmp_path):
    folder, run_dir = _copy(world, tmp_path), str(tmp_path / "run")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "run.py"),
            "config=demo/vise_tiny",
            "config.data.sources=[img2dataset]",
            f"config.data.img2dataset={folder}",
            f"config.data.labels={world['labels']}",
            f"config.run_dir={run_dir}",
            "config.optimizer.num_epochs=1",
            "config.data.num_workers=2",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    saved = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert saved["position"]["iteration"] == 3 and saved["bad_images"] == {"seen": 20, "skipped": 0}  # 8 + 8 + 4
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert f"img2dataset shards {folder}: 20 samples kept of 25 in 2 tars" in f.read()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("img2dataset") is None, reason="the img2dataset CLI is not installed")
def test_the_real_img2dataset_output_is_read_in_place(world, tmp_path):
    store, port = world["store"], _free_port()
    root = store.meta["image_root"]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", root],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rows = list(range(12))
        urls = [f"http://127.0.0.1:{port}/{store.images[r]}" for r in rows] + [f"http://127.0.0.1:{port}/missing.jpg"]
        pq.write_table(
            pa.table({"url": urls, "post_id": [store.ids[r] for r in rows] + ["gone"]}), str(tmp_path / "urls.parquet")
        )
        for _ in range(100):  # the server is up
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        out = str(tmp_path / "out")
        proc = subprocess.run(
            [
                "img2dataset",
                "--url_list",
                str(tmp_path / "urls.parquet"),
                "--input_format",
                "parquet",
                "--url_col",
                "url",
                "--save_additional_columns",
                '["post_id"]',
                "--output_format",
                "webdataset",
                "--output_folder",
                out,
                "--processes_count",
                "1",
                "--thread_count",
                "4",
                "--image_size",
                "32",
                "--resize_mode",
                "keep_ratio",
                "--enable_wandb",
                "False",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.kill()
        server.wait()
    source = Img2DatasetShards(out, store)
    assert source.counts == {
        "tars": 1,
        "kept": 12,
        "in_tar": 12,
        "failed": 1,
        "unlabelled": 0,
        "no_image": 0,
        "unreadable": 0,
        "truncated": 0,
    }
    reference = EngagementLabels(store, root)
    import webdataset as wds

    samples = {s["__key__"]: s for s in wds.DataPipeline(wds.SimpleShardList(source.tars), wds.tarfile_to_samples())}
    for i in range(len(source)):
        data, targets = source.read(i)
        key = source.where(i).split("#")[1]
        assert data == samples[key]["jpg"]
        assert json.loads(samples[key]["json"])["post_id"] == store.ids[source.store_row(i)]
        assert torch.equal(targets["comments"], reference.targets_at(source.store_row(i))["comments"])
