"""The data a user holds, end to end: Reddit dumps compressed as the real ones are, their image URLs
exported, the real img2dataset downloading them from a local HTTP server (some fail), the label job
on the dumps, and pretraining straight from img2dataset's shards; a SIGKILL and a resume from those
shards give the weights of a run that never stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT
from PIL import Image

from vise_plugin.config import compose_config
from vise_plugin.data.img2dataset_shards import Img2DatasetShards
from vise_plugin.engine.pretrain import pretrain
from vise_plugin.errors import ConfigError
from vise_plugin.labels import LabelStore
from vise_plugin.labels.job.reddit_step import join_reddit
from vise_plugin.labels.job.stages import LabelSettings
from vise_plugin.reddit import RedditSettings
from vise_plugin.reddit.fixture import write_reddit_month

pytestmark = pytest.mark.resume

LABELS = [
    "config.labels.comments.k=4",
    "config.labels.comments.tfidf.min_df=1",
    "config.labels.reactions.k=3",
    "config.labels.fit_fraction=0.25",
    "config.labels.on_bad_record=skip",
    "config.labels.num_workers=1",
    "config.labels.reddit.memory_limit=256MB",
    "config.labels.reddit.threads=1",
]


def _serve(folder):
    """``python -m http.server`` on 127.0.0.1 (a free port) serving ``folder``; returns (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", folder],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    return proc, int(line.split(" port ")[1].split()[0])


def _picture(path, topic, i):
    rng = np.random.default_rng(i)
    colours = {"pets": [200, 40, 40], "food": [40, 200, 40], "cars": [40, 40, 200]}
    base = np.array(colours.get(topic, [200, 200, 40]), dtype=np.float32)
    pixels = (base + rng.normal(0, 25, (40, 48, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _run(*argv, timeout=300, code=0):
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == code, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """The dumps, the URL export and img2dataset's shards (the images of every 7th URL are missing)."""
    root = tmp_path_factory.mktemp("reddit")
    www, dumps = root / "www", root / "dumps"
    www.mkdir()
    dumps.mkdir()
    server, port = _serve(str(www))
    try:
        month = write_reddit_month(str(dumps), lambda i: f"http://127.0.0.1:{port}/img{i}.jpg", num_posts=150)
        served, missing = [], 0
        for n, (post_id, urls) in enumerate(sorted(month["urls"].items())):
            for k, url in enumerate(urls):
                if (n + k) % 7 == 3:
                    missing += 1
                    continue
                _picture(str(www / url.rsplit("/", 1)[1]), month["topics"][post_id], n * 10 + k)
                served.append(post_id)
        urls = str(root / "urls.parquet")
        said = _run(
            sys.executable, os.path.join(ROOT, "tools", "reddit_urls.py"), month["submissions"], "--output", urls
        )
        shards = str(root / "shards")
        _run(
            "img2dataset",
            "--url_list",
            urls,
            "--input_format",
            "parquet",
            "--url_col",
            "url",
            "--save_additional_columns",
            '["post_id","image_index"]',
            "--output_format",
            "webdataset",
            "--output_folder",
            shards,
            "--processes_count",
            "1",
            "--thread_count",
            "8",
            "--image_size",
            "40",
            "--resize_mode",
            "keep_ratio",
            "--number_sample_per_shard",
            "40",
            "--enable_wandb",
            "False",
        )
    finally:
        server.terminate()
        server.wait()
    return {
        "root": root,
        "month": month,
        "urls": urls,
        "said": said,
        "shards": shards,
        "served": served,
        "missing": missing,
    }


@pytest.fixture(scope="module")
def store(downloaded):
    month = downloaded["month"]
    output = str(downloaded["root"] / "labels")
    _run(
        sys.executable,
        os.path.join(ROOT, "tools", "generate_labels.py"),
        "config=demo/vise_tiny",
        f"config.labels.posts=[{month['submissions']},{month['comments']}]",
        f"config.labels.output={output}",
        *LABELS,
    )
    return output


def test_the_url_export_lists_every_image_of_the_image_posts_with_its_post_id(downloaded):
    month = downloaded["month"]
    table = pq.read_table(downloaded["urls"]).to_pylist()
    by_post = {}
    for row in table:
        by_post.setdefault(row["post_id"], []).append((row["image_index"], row["url"]))
    assert {p: [u for _, u in sorted(rows)] for p, rows in by_post.items()} == month["urls"]
    assert f"wrote {len(table)} image URLs" in downloaded["said"]


def test_img2dataset_wrote_the_served_images_and_counted_the_failed_ones(downloaded):
    stats = [
        json.load(open(os.path.join(downloaded["shards"], name)))
        for name in sorted(os.listdir(downloaded["shards"]))
        if name.endswith("_stats.json")
    ]
    assert len(stats) >= 2
    assert sum(s["successes"] for s in stats) == len(downloaded["served"])
    assert sum(s["count"] - s["successes"] for s in stats) == downloaded["missing"] > 0


def test_the_label_job_reads_the_dumps_and_labels_the_image_posts_by_post_id(downloaded, store):
    month = downloaded["month"]
    labels = LabelStore(store)
    meta = labels.meta
    image_posts = set(month["urls"])
    assert set(labels.ids) <= image_posts
    assert meta["counts"]["posts_read"] == len(image_posts)  # every image post (with or without comments) is read
    assert meta["counts"]["labelled"] + meta["counts"]["held_out"] == len(image_posts)
    assert meta["tasks"]["reactions"]["types"] == ["upvotes", "downvotes", "comments", "awards"]
    assert meta["bad_records"]["counts"] == {"malformed_json": 1}  # the fixture's one broken comment line
    skipped, counts = meta["reddit"]["summary"]["skipped"], month["counts"]
    assert skipped["comment_skipped_body"] == counts["deleted"] + counts["removed"]
    assert skipped["comment_skipped_author"] == counts["automoderator"]
    assert skipped["bad_lines"] == 1
    kept = [
        c
        for post in image_posts
        for c in month["comments_by_post"].get(post, [])
        if c["body"].strip() and c["body"] not in ("[deleted]", "[removed]") and c["author"] != "AutoModerator"
    ]
    summary = meta["reddit"]["summary"]
    assert summary["comments_joined"] == len(kept) > 0 and summary["comments_read"] == counts["comment_lines"] - 1


def test_pretraining_reads_the_downloaded_images_of_labelled_posts_and_counts_the_rest(downloaded, store):
    labels = LabelStore(store)
    source = Img2DatasetShards(downloaded["shards"], labels)
    labelled = set(labels.ids)
    assert source.counts["kept"] == len(source) == sum(p in labelled for p in downloaded["served"])
    assert source.counts["unlabelled"] == sum(p not in labelled for p in downloaded["served"]) > 0  # held out to fit
    assert source.counts["failed"] == downloaded["missing"]
    for i in range(len(source)):
        row = source.store_row(i)
        assert downloaded["month"]["urls"][labels.ids[row]][0] == labels.images[row]  # the post's first image URL


def test_a_broken_dump_line_stops_the_label_job_in_one_line_unless_bad_lines_are_skipped(downloaded, tmp_path):
    month = downloaded["month"]
    said = _run(
        sys.executable,
        os.path.join(ROOT, "tools", "generate_labels.py"),
        "config=demo/vise_tiny",
        f"config.labels.posts=[{month['submissions']},{month['comments']}]",
        f"config.labels.output={tmp_path / 'labels'}",
        *LABELS,
        "config.labels.on_bad_record=fail",
        code=2,
    )
    assert f"error: {month['comments']}:{month['malformed_line']}: malformed JSON" in said


def test_a_finished_job_rerun_with_other_speed_settings_does_nothing(downloaded, store):
    month = downloaded["month"]
    said = _run(
        sys.executable,
        os.path.join(ROOT, "tools", "generate_labels.py"),
        "config=demo/vise_tiny",
        f"config.labels.posts=[{month['submissions']},{month['comments']}]",
        f"config.labels.output={store}",
        *LABELS,
        "config.labels.reddit.memory_limit=512MB",
        "config.labels.reddit.threads=2",
    )
    assert "complete for these inputs and settings; nothing to do" in said and "joining" not in said


def test_a_join_is_reused_whatever_its_speed_settings_and_refused_with_other_output_settings(downloaded, tmp_path):
    month = downloaded["month"]
    settings = LabelSettings(work_dir=str(tmp_path / "work"), comments={}, reactions={}, skip_bad_records=True)
    dumps = ([month["submissions"]], [month["comments"]])
    first = join_reddit(settings, RedditSettings(memory_limit="256MB", threads=1), *dumps)
    assert join_reddit(settings, RedditSettings(memory_limit="512MB"), *dumps) == first
    with pytest.raises(ConfigError, match=r"config.labels.reddit.max_comments: 100 here, 3 now"):
        join_reddit(settings, RedditSettings(max_comments=3), *dumps)


def _cfg(downloaded, store, run_dir, *extra):
    return compose_config(
        [
            "config=demo/vise_tiny",
            "config.data.sources=[img2dataset]",
            f"config.data.img2dataset={downloaded['shards']}",
            f"config.data.labels={store}",
            f"config.run_dir={run_dir}",
            "config.optimizer.num_epochs=3",
            *extra,
        ]
    )


def _weights(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)


def test_pretraining_from_img2dataset_shards_survives_a_sigkill_and_resumes_to_the_same_weights(
    downloaded, store, tmp_path
):
    reference = pretrain(_cfg(downloaded, store, str(tmp_path / "reference")))
    total = reference.iteration
    assert total >= 9
    run_dir = str(tmp_path / "run")
    cmd = [
        sys.executable,
        os.path.join(ROOT, "tools", "run.py"),
        "config=demo/vise_tiny",
        "config.data.sources=[img2dataset]",
        f"config.data.img2dataset={downloaded['shards']}",
        f"config.data.labels={store}",
        f"config.run_dir={run_dir}",
        "config.optimizer.num_epochs=3",
        "config.checkpoint.period_iterations=2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        path = os.path.join(run_dir, "stdout.json")
        if os.path.exists(path) and sum(1 for _ in open(path)) >= total // 2 + 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    saved = _weights(run_dir)["position"]["iteration"]
    assert 0 < saved < total
    resumed = pretrain(_cfg(downloaded, store, run_dir, "config.checkpoint.period_iterations=2"))
    assert resumed.iteration == total
    a, b = _weights(run_dir)["model"], _weights(str(tmp_path / "reference"))["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
