"""Reddit dumps: the zstd window, records, image URLs, comment filters, the DuckDB join and the URL export."""

import functools
import html
import io
import json
import os
import shutil
import subprocess

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from vise_plugin.errors import ConfigError, InputError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.records import BadRecord
from vise_plugin.reddit import (
    RedditSettings,
    Submission,
    comment_batches,
    dumps,
    export_urls,
    image_urls,
    is_image_post,
    join_dumps,
    line_blocks,
    open_zstd,
    reaction_columns,
    submission_batches,
    write_reddit_month,
    write_zstd_ndjson,
)
from vise_plugin.reddit.urls import main as urls_main


def image_url(i: int) -> str:
    return f"https://i.redd.it/img{i}.jpg?width=640&format=pjpg&s=abc{i}"


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return write_reddit_month(str(tmp_path_factory.mktemp("dumps")), image_url, num_posts=200, seed=0)


def kept(comments, suffixes=()):
    """The comments the default filters keep, leaving out also authors that end in one of ``suffixes``."""
    return [
        c
        for c in comments
        if c["body"] not in ("[deleted]", "[removed]")
        and c["body"].strip()
        and c["author"] != "AutoModerator"
        and not (suffixes and c["author"].lower().endswith(suffixes))
    ]


def expected_reactions(post, names):
    s, r = post["score"], post["upvote_ratio"]
    up = max(round(s * r / (2 * r - 1)), 0) if abs(2 * r - 1) > 1e-9 else 0
    awards = post.get("total_awards_received")
    if awards is None:
        awards = sum(a["count"] for a in post["all_awardings"]) + sum(post["gildings"].values())
    values = {
        "upvotes": up,
        "downvotes": max(up - s, 0),
        "comments": post["num_comments"],
        "awards": awards,
        "score": max(s, 0),
    }
    return {name: values[name] for name in names}


def read_parts(out_dir, files):
    return pa.concat_tables([pq.read_table(os.path.join(out_dir, f)) for f in files])


# -- zstd with a 2 GB window ------------------------------------------------------------------------------------


def test_written_files_declare_a_2gb_window_that_only_a_large_window_reader_accepts(tmp_path):
    path = str(tmp_path / "RC_test.zst")
    objects = [{"id": str(i), "body": "x" * (i % 50)} for i in range(2000)]
    write_zstd_ndjson(path, objects)
    data = open(path, "rb").read()
    expected = b"".join(msgspec.json.encode(o) + b"\n" for o in objects)
    assert zstandard.get_frame_parameters(data).window_size == 2**31
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with open_zstd(path) as f:
        assert f.read() == expected
    if shutil.which("zstd") is None:
        pytest.skip("no zstd command")
    assert subprocess.run(["zstd", "-d", "--long=31", "-c", path], capture_output=True, check=True).stdout == expected
    assert subprocess.run(["zstd", "-d", "-c", path], capture_output=True).returncode != 0


def test_line_blocks_end_at_newlines_and_number_lines_across_frames(tmp_path):
    path = str(tmp_path / "two_frames.zst")
    write_zstd_ndjson(path, [{"n": i, "pad": "y" * (i % 300)} for i in range(3000)])
    with open(path, "ab") as f:  # a second frame, as pzstd or cat make; its last line has no newline
        f.write(zstandard.ZstdCompressor().compress(b'{"n": 3000}\n{"n": "no newline"}'))
    blocks = list(line_blocks(path, block_bytes=20_000))
    assert len(blocks) > 10
    line = 1
    for first, block in blocks:
        assert first == line and isinstance(block, bytes)
        line += block.count(b"\n")
    assert all(block.endswith(b"\n") for _, block in blocks[:-1])
    lines = b"".join(block for _, block in blocks).split(b"\n")
    assert len(lines) == 3002 and lines[-1] == b'{"n": "no newline"}'
    assert [json.loads(x)["n"] for x in lines[:-1]] == list(range(3001))


def test_truncated_and_foreign_files_raise_one_line_after_the_lines_before(tmp_path):
    path = str(tmp_path / "RC_cut.zst")
    write_zstd_ndjson(path, [{"n": i, "text": os.urandom(40).hex()} for i in range(20000)])
    data = open(path, "rb").read()
    cut = str(tmp_path / "RC_cut_short.zst")
    open(cut, "wb").write(data[: len(data) * 2 // 3])
    seen = []
    with pytest.raises(InputError, match=r"RC_cut_short\.zst: not a readable zstd file \(.*\)$") as error:
        for _, block in line_blocks(cut, block_bytes=1 << 16):
            seen += block.splitlines()
    assert "\n" not in str(error.value)
    assert 1000 < len(seen) < 20000 and [json.loads(x)["n"] for x in seen] == list(range(len(seen)))
    plain = str(tmp_path / "RS_plain.zst")
    open(plain, "wb").write(b'{"id": "a"}\n')
    with pytest.raises(InputError, match=r"RS_plain\.zst: not a readable zstd file"):
        list(line_blocks(plain))
    open(plain, "wb").close()
    with pytest.raises(InputError, match=r"RS_plain\.zst: not a readable zstd file \(empty file\)"):
        list(line_blocks(plain))
    with pytest.raises(InputError, match=r"RS_gone\.zst: cannot read \(No such file or directory\)"):
        list(line_blocks(str(tmp_path / "RS_gone.zst")))


# -- records and image URLs --------------------------------------------------------------------------------------


def submission(**fields) -> Submission:
    return msgspec.json.decode(msgspec.json.encode({"id": "p1", **fields}), type=Submission)


def test_records_are_lenient_about_timestamps_nulls_and_unknown_fields(tmp_path):
    path = str(tmp_path / "RC_x.zst")
    write_zstd_ndjson(
        path,
        [
            {"id": "a", "link_id": "t3_p", "body": "hi", "author": "u", "created_utc": "1672531200", "_meta": {"x": 1}},
            {
                "id": "b",
                "link_id": "t3_p",
                "body": "hi",
                "author": "u",
                "created_utc": 1672531201.0,
                "score": None,
                "edited": 1672531299,
                "all_awardings": [{"count": 2, "name": "Gold"}],
                "gildings": {"gid_1": 1},
            },
            {"id": "c", "link_id": "t3_p", "body": "hi", "author": None, "created_utc": 1672531202},
        ],
    )
    batch = pa.Table.from_batches(list(comment_batches([path], RedditSettings())))
    assert batch.column("created_utc").to_pylist() == [1672531200, 1672531201, 1672531202]
    assert batch.column("score").to_pylist() == [0, 0, 0]
    assert batch.column("link_id").to_pylist() == ["p", "p", "p"]
    assert submission(upvote_ratio=1, created_utc="5", post_hint=None, gallery_data=None).created_utc == "5"


def test_image_urls_of_images_galleries_previews_and_posts_without_one():
    preview = {"images": [{"source": {"url": "https://preview.redd.it/x.jpg?width=10&amp;s=1", "width": 10}}]}
    assert image_urls(submission(post_hint="image", url="https://i.redd.it/a.jpg?a=1&amp;b=2")) == [
        "https://i.redd.it/a.jpg?a=1&amp;b=2"
    ]  # url is not HTML-escaped in the dumps; taken as it is
    assert image_urls(submission(post_hint="image", url_overridden_by_dest="https://i.imgur.com/b.png")) == [
        "https://i.imgur.com/b.png"
    ]
    gallery = submission(
        is_gallery=True,
        url="https://www.reddit.com/gallery/p1",
        gallery_data={
            "items": [
                {"media_id": "m3"},
                {"media_id": "gif"},
                {"media_id": "m1"},
                {"media_id": "gone"},
                {"media_id": "m2"},
            ]
        },
        media_metadata={
            "m1": {"status": "valid", "e": "Image", "s": {"u": "https://p.redd.it/1.jpg?w=1&amp;s=a"}},
            "m2": {"status": "valid", "e": "Image", "s": {"u": "https://p.redd.it/2.jpg?w=1&amp;s=b"}},
            "m3": {"status": "valid", "e": "Image", "s": {"u": "https://p.redd.it/3.jpg", "x": 5}},
            "gif": {
                "status": "valid",
                "e": "AnimatedImage",
                "s": {"gif": "https://a.gif", "u": "https://p.redd.it/a.gif?format=png"},
            },
            "gone": {"status": "failed"},
        },
    )
    assert image_urls(gallery) == [
        "https://p.redd.it/3.jpg",
        "https://p.redd.it/1.jpg?w=1&s=a",
        "https://p.redd.it/2.jpg?w=1&s=b",
    ]
    assert image_urls(submission(post_hint="link", url="https://news.example.com/a", preview=preview)) == [
        "https://preview.redd.it/x.jpg?width=10&s=1"
    ]
    assert image_urls(submission(is_self=True, post_hint="self", preview=preview)) == []
    assert image_urls(submission(is_video=True, post_hint="hosted:video", preview=preview)) == []
    assert image_urls(submission(url="https://blog.example.com/a")) == []
    assert is_image_post(gallery) and not is_image_post(submission(is_self=True, preview=preview))


def test_reaction_columns_follow_the_documented_derivation():
    subs = [
        submission(score=100, upvote_ratio=0.75, num_comments=4, total_awards_received=2),
        submission(score=-5, upvote_ratio=0.4, all_awardings=[{"count": 2}, {"count": 1}], gildings={"gid_1": 4}),
        submission(score=3, upvote_ratio=0.5, total_awards_received=None),
        submission(score=10, upvote_ratio=0.3),  # inconsistent, as deleted or fuzzed posts can be
        submission(score=7),
    ]
    columns = reaction_columns(subs, ("upvotes", "downvotes", "comments", "awards", "score"))
    assert {k: v.tolist() for k, v in columns.items()} == {
        "upvotes": [150, 10, 0, 0, 7],
        "downvotes": [50, 15, 0, 0, 0],
        "comments": [4, 0, 0, 0, 0],
        "awards": [2, 7, 0, 0, 0],
        "score": [100, 0, 3, 10, 7],
    }
    assert list(reaction_columns(subs, ("score", "upvotes"))) == ["score", "upvotes"]


def test_month_fixture_image_posts_are_what_image_urls_finds(month):
    counts = {}
    batches = list(submission_batches([month["submissions"]], RedditSettings(), counts=counts))
    table = pa.Table.from_batches(batches)
    urls = dict(zip(table.column("id").to_pylist(), table.column("urls").to_pylist()))
    assert urls == month["urls"]
    assert counts["image_submissions"] == len(month["image_posts"])
    assert counts["submission_no_image"] == len(month["non_image_posts"])
    galleries = [u for u in urls.values() if len(u) > 1]
    assert galleries and all("&amp;" not in u and "&format=" in u for g in galleries for u in g)
    counts = {}
    list(submission_batches([month["submissions"]], RedditSettings(include_nsfw=False), counts=counts))
    assert counts["submission_nsfw"] == len(month["nsfw"]) > 0


# -- comments: filters and bad lines -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffixes", [(), ("bot",)])
def test_comment_filters_count_each_reason(month, suffixes):
    bad, counts = BadRecordReport(), {}
    settings = RedditSettings(skip_author_suffixes=suffixes)
    table = pa.Table.from_batches(list(comment_batches([month["comments"]], settings, bad, counts)))
    c = month["counts"]
    every = [x for comments in month["comments_by_post"].values() for x in comments]
    assert counts["comments"] == len(every) == c["comment_lines"] - 1
    assert counts["comment_skipped_body"] == c["deleted"] + c["removed"] > 0
    assert counts["comment_blank_body"] == c["blank"] > 0
    assert counts["comment_skipped_author"] == c["automoderator"] > 0
    assert counts["comment_author_suffix"] == (c["reminder_bot"] if suffixes else 0) and c["reminder_bot"] > 0
    assert counts["comments_kept"] == table.num_rows == len(kept(every, suffixes))
    assert sorted(table.column("id").to_pylist()) == sorted(x["id"] for x in kept(every, suffixes))
    bodies = set(table.column("body").to_pylist())
    assert not bodies & {"[deleted]", "[removed]"} and not any("automatically" in b for b in bodies)
    assert any("remind you" in b for b in bodies) != bool(suffixes)
    assert set(table.column("link_id").to_pylist()) <= set(month["topics"])
    assert counts["bad_lines"] == bad.total == bad.counts["malformed_json"] == 1
    assert f"RC_2023-01.zst:{month['malformed_line']}: malformed JSON" in bad.examples["malformed_json"][0]


def test_a_bad_line_raises_naming_file_and_line_without_a_report(month):
    with pytest.raises(BadRecord) as error:
        list(comment_batches([month["comments"]], RedditSettings()))
    assert isinstance(error.value, InputError) and error.value.kind == "malformed_json"
    assert error.value.where == f"{month['comments']}:{month['malformed_line']}"


def test_bad_lines_in_a_later_block_are_numbered_from_the_file_start(tmp_path, monkeypatch):
    path = str(tmp_path / "RC_late.zst")
    lines = [{"id": str(i), "link_id": "t3_p", "body": "b" * 200, "author": "u"} for i in range(5000)]
    lines.insert(4321, '{"id": 1}')
    write_zstd_ndjson(path, lines)
    monkeypatch.setattr(dumps, "line_blocks", functools.partial(line_blocks, block_bytes=1 << 16))
    bad = BadRecordReport()
    assert sum(b.num_rows for b in dumps.comment_batches([path], RedditSettings(), bad)) == 5000
    assert bad.examples["missing_field"] == [f"{path}:4322: unexpected record (Expected `str`, got `int` - at `$.id`)"]
    assert len(list(line_blocks(path, block_bytes=1 << 16))) > 5


# -- the join ----------------------------------------------------------------------------------------------------


def test_join_samples_filters_and_keeps_posts_and_reactions(month, tmp_path):
    settings = RedditSettings(max_comments=3, rows_per_file=50)
    bad = BadRecordReport()
    summary = join_dumps(
        [month["submissions"]],
        [month["comments"]],
        str(tmp_path / "out"),
        settings,
        str(tmp_path / "work"),
        bad,
        progress=False,
    )
    assert json.load(open(tmp_path / "out" / "summary.json")) == summary
    assert summary["files"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet", "part-00003.parquet"]
    assert os.listdir(tmp_path / "work") == []
    table = read_parts(str(tmp_path / "out"), summary["files"])
    assert table.schema.names == ["id", "image", "comments", "reactions", "urls", "title"]
    assert table.schema.field("reactions").type == pa.struct([(n, pa.int64()) for n in settings.reactions])
    rows = table.to_pylist()
    ids = [r["id"] for r in rows]
    assert ids == sorted(month["image_posts"]) and summary["posts"] == len(ids)
    assert summary["skipped"]["duplicate_submissions"] == 0 and summary["skipped"]["bad_lines"] == bad.total == 1
    on_image = {p: kept(month["comments_by_post"][p]) for p in month["image_posts"]}
    for row in rows:
        valid = [c["body"] for c in on_image[row["id"]]]
        assert len(row["comments"]) == min(3, len(valid))
        assert set(row["comments"]) <= set(valid)
        assert row["urls"] == month["urls"][row["id"]] and row["image"] == row["urls"][0]
        assert row["reactions"] == expected_reactions(month["posts"][row["id"]], settings.reactions)
    assert len(on_image[ids[0]]) > 3
    assert any(not r["comments"] for r in rows)
    assert summary["comments_joined"] == sum(len(v) for v in on_image.values())
    assert summary["comments_sampled"] == sum(len(r["comments"]) for r in rows)
    non_image = sum(len(kept(month["comments_by_post"][p])) for p in month["non_image_posts"])
    assert summary["skipped"]["comment_not_on_image_post"] == non_image > 0
    assert summary["comments_kept"] == summary["comments_joined"] + non_image

    again = join_dumps(
        [month["submissions"]],
        [month["comments"]],
        str(tmp_path / "again"),
        settings,
        str(tmp_path / "work"),
        BadRecordReport(),
        progress=False,
    )
    assert again == summary and read_parts(str(tmp_path / "again"), again["files"]).equals(table)
    other_seed = RedditSettings(max_comments=3, rows_per_file=50, seed=1)
    reseeded = join_dumps(
        [month["submissions"]],
        [month["comments"]],
        str(tmp_path / "seed1"),
        other_seed,
        str(tmp_path / "work"),
        BadRecordReport(),
        progress=False,
    )
    assert read_parts(str(tmp_path / "seed1"), reseeded["files"]).column("comments") != table.column("comments")


def test_join_under_a_small_memory_limit_with_other_reactions(month, tmp_path):
    settings = RedditSettings(
        reactions=("score", "comments", "downvotes"),
        memory_limit="64MB",
        threads=1,
        include_nsfw=False,
        max_comments=100,
    )
    summary = join_dumps(
        [month["submissions"]],
        [month["comments"]],
        str(tmp_path / "out"),
        settings,
        str(tmp_path / "work"),
        BadRecordReport(),
        progress=False,
    )
    table = pq.read_table(str(tmp_path / "out" / "part-00000.parquet"))
    assert summary["files"] == ["part-00000.parquet"]
    assert table.schema.field("reactions").type == pa.struct(
        [("score", pa.int64()), ("comments", pa.int64()), ("downvotes", pa.int64())]
    )
    assert table.column("id").to_pylist() == sorted(set(month["image_posts"]) - set(month["nsfw"]))
    posts = [month["posts"][i] for i in table.column("id").to_pylist()]
    assert table.column("reactions").to_pylist() == [expected_reactions(p, settings.reactions) for p in posts]
    assert any(p["score"] < 0 for p in posts) and any(p.get("total_awards_received") is None for p in posts)
    assert summary["comments_sampled"] == summary["comments_joined"]
    with pytest.raises(ConfigError, match=r"^config\.labels\.reddit\.memory_limit='lots': "):
        join_dumps(
            [month["submissions"]],
            [month["comments"]],
            str(tmp_path / "out"),
            RedditSettings(memory_limit="lots"),
            str(tmp_path / "work"),
            progress=False,
        )


def test_join_keeps_the_last_line_of_a_repeated_submission_across_files(month, tmp_path):
    first = month["posts"][month["image_posts"][0]]
    later = str(tmp_path / "RS_2023-02.zst")
    write_zstd_ndjson(later, [dict(first, score=first["score"] + 500, num_comments=7, title="edited")])
    summary = join_dumps(
        [month["submissions"], later],
        [month["comments"]],
        str(tmp_path / "out"),
        RedditSettings(),
        str(tmp_path / "work"),
        BadRecordReport(),
        progress=False,
    )
    assert summary["posts"] == len(month["image_posts"]) and summary["skipped"]["duplicate_submissions"] == 1
    row = pq.read_table(str(tmp_path / "out" / "part-00000.parquet")).slice(0, 1).to_pylist()[0]
    assert row["id"] == first["id"] and row["title"] == "edited"
    assert row["reactions"] == expected_reactions(
        dict(first, score=first["score"] + 500, num_comments=7), RedditSettings().reactions
    )


def test_join_without_a_report_raises_the_bad_line(month, tmp_path):
    with pytest.raises(BadRecord, match=rf"RC_2023-01\.zst:{month['malformed_line']}: malformed JSON"):
        join_dumps(
            [month["submissions"]],
            [month["comments"]],
            str(tmp_path / "out"),
            RedditSettings(),
            str(tmp_path / "work"),
            progress=False,
        )
    assert not os.path.exists(tmp_path / "out" / "summary.json")


# -- settings and the URL export ---------------------------------------------------------------------------------


def test_settings_from_config_name_the_key():
    settings = RedditSettings.from_config(
        {"max_comments": 5, "skip_author_suffixes": ["bot"], "reactions": ["score", "upvotes"]}
    )
    assert settings.skip_author_suffixes == ("bot",) and settings.reactions == ("score", "upvotes")
    with pytest.raises(ConfigError, match=r"^config\.labels\.reddit\.max_coments: unknown key"):
        RedditSettings.from_config({"max_coments": 5})
    with pytest.raises(ConfigError, match=r"^config\.labels\.reddit\.reactions=\['likes'\]"):
        RedditSettings.from_config({"reactions": ["likes"]})
    with pytest.raises(ConfigError, match=r"^config\.labels\.reddit\.skip_bodies='\[deleted\]'"):
        RedditSettings.from_config({"skip_bodies": "[deleted]"})


def test_export_urls_writes_one_row_per_image_and_the_cli_summarises(month, tmp_path, capsys):
    out = str(tmp_path / "urls.parquet")
    counts = {}
    n = export_urls([month["submissions"]], out, RedditSettings(), counts)
    table = pq.read_table(out)
    assert table.schema.names == ["url", "post_id", "image_index", "title"]
    rows = table.to_pylist()
    assert n == len(rows) == sum(len(u) for u in month["urls"].values())
    gallery = next(p for p, u in month["urls"].items() if len(u) == 3)
    assert [(r["url"], r["image_index"]) for r in rows if r["post_id"] == gallery] == [
        (u, i) for i, u in enumerate(month["urls"][gallery])
    ]
    assert all(r["image_index"] == 0 for r in rows if len(month["urls"][r["post_id"]]) == 1)
    assert all(html.unescape(r["url"]) == r["url"] for r in rows)

    assert (
        urls_main([os.path.join(os.path.dirname(month["submissions"]), "RS_*.zst"), "--output", out, "--no-nsfw"]) == 0
    )
    posts = len(month["image_posts"]) - len(month["nsfw"])
    assert capsys.readouterr().out == (
        f"wrote {pq.read_metadata(out).num_rows} image URLs of {posts} image posts "
        f"({month['counts']['submission_lines']} submissions read) to {out}\n"
    )
    assert urls_main([str(tmp_path / "RS_missing.zst"), "--output", out]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'RS_missing.zst'}: engagement file not found\n"
    broken = str(tmp_path / "RS_broken.zst")
    write_zstd_ndjson(broken, [month["posts"][month["image_posts"][0]], '{"id": "x", "title": '])
    assert urls_main([broken, "--output", out]) == 0
    said = capsys.readouterr()
    assert said.out.startswith("wrote 1 image URLs of 1 image posts (1 submissions read)")
    assert f"{broken}:2: malformed JSON" in said.err
