"""Whole dump files as Arrow record batches: image submissions and the comments worth keeping.

Each function takes ``counts``, a dict it adds to (see :data:`SUBMISSION_COUNTS` and
:data:`COMMENT_COUNTS`), and ``bad``: a :class:`BadRecordReport` that counts malformed lines, which are
then left out; without it a malformed line raises a :class:`BadRecord` naming ``file:line``.
"""

from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.reddit.images import image_urls
from vise_plugin.reddit.reactions import reaction_columns
from vise_plugin.reddit.records import COMMENT_ROW_DECODER, SUBMISSION_DECODER, decode_block, timestamp
from vise_plugin.reddit.settings import RedditSettings
from vise_plugin.reddit.zstd_ndjson import line_blocks

SUBMISSION_COUNTS = ("submissions", "image_submissions", "submission_no_image", "submission_nsfw", "bad_lines")
COMMENT_COUNTS = (
    "comments",
    "comments_kept",
    "comment_skipped_body",
    "comment_blank_body",
    "comment_skipped_author",
    "comment_author_suffix",
    "bad_lines",
)

COMMENT_SCHEMA = pa.schema(
    [
        ("link_id", pa.string()),
        ("id", pa.string()),
        ("body", pa.string()),
        ("score", pa.int64()),
        ("created_utc", pa.int64()),
    ]
)


def submission_schema(reactions: Sequence[str]) -> pa.Schema:
    """``id``, ``image`` (the first image URL), ``urls`` (all of them), ``title`` (strings), then one
    int64 ``reaction_<name>`` per name of ``reactions``."""
    return pa.schema(
        [("id", pa.string()), ("image", pa.string()), ("urls", pa.list_(pa.string())), ("title", pa.string())]
        + [(f"reaction_{name}", pa.int64()) for name in reactions]
    )


def submission_batches(
    paths: Iterable[str],
    settings: RedditSettings,
    bad: Optional[BadRecordReport] = None,
    counts: Optional[Dict[str, int]] = None,
    progress: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The image submissions of ``RS_*`` files (:func:`submission_schema`); submissions without an image,
    or ``over_18`` ones unless ``settings.include_nsfw``, are counted and left out."""
    counts = _start(counts, SUBMISSION_COUNTS)
    schema = submission_schema(settings.reactions)
    for path in paths:
        for first_line, block in line_blocks(path, progress=progress):
            subs = _decode(SUBMISSION_DECODER, block, path, first_line, bad, counts)
            counts["submissions"] += len(subs)
            kept, urls = [], []
            for sub in subs:
                found = image_urls(sub)
                if not found:
                    counts["submission_no_image"] += 1
                elif sub.over_18 and not settings.include_nsfw:
                    counts["submission_nsfw"] += 1
                else:
                    kept.append(sub)
                    urls.append(found)
            counts["image_submissions"] += len(kept)
            if not kept:
                continue
            columns = [[s.id for s in kept], [u[0] for u in urls], urls, [s.title or "" for s in kept]]
            columns += reaction_columns(kept, settings.reactions).values()
            yield pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema)], schema=schema)


def comment_batches(
    paths: Iterable[str],
    settings: RedditSettings,
    bad: Optional[BadRecordReport] = None,
    counts: Optional[Dict[str, int]] = None,
    progress: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The comments of ``RC_*`` files worth keeping (:data:`COMMENT_SCHEMA`; ``link_id`` without its
    ``t3_``). Left out, each counted under the first reason that applies: a body among
    ``settings.skip_bodies``, a blank body, an author among ``settings.skip_authors``, an author ending
    with one of ``settings.skip_author_suffixes`` (ignoring case)."""
    counts = _start(counts, COMMENT_COUNTS)
    for path in paths:
        for first_line, block in line_blocks(path, progress=progress):
            comments = _decode(COMMENT_ROW_DECODER, block, path, first_line, bad, counts)
            counts["comments"] += len(comments)
            if not comments:
                continue
            body = pa.array([c.body for c in comments], pa.string())
            author = pa.array([c.author for c in comments], pa.string())
            keep = _keep(body, author, settings, counts)
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array([c.link_id for c in comments], pa.string()),
                    pa.array([c.id for c in comments], pa.string()),
                    body,
                    pc.fill_null(pa.array([c.score for c in comments], pa.int64()), 0),
                    _timestamps([c.created_utc for c in comments]),
                ],
                schema=COMMENT_SCHEMA,
            ).filter(keep)
            counts["comments_kept"] += batch.num_rows
            if batch.num_rows:
                link_id = batch.column(0)
                link_id = pc.if_else(pc.starts_with(link_id, "t3_"), pc.utf8_slice_codeunits(link_id, 3), link_id)
                yield batch.set_column(0, "link_id", link_id)


def _keep(body: pa.Array, author: pa.Array, settings: RedditSettings, counts: Dict[str, int]) -> pa.Array:
    reasons = [
        ("comment_skipped_body", pc.is_in(body, value_set=pa.array(settings.skip_bodies, pa.string()))),
        ("comment_blank_body", pc.equal(pc.utf8_trim_whitespace(body), "")),
        ("comment_skipped_author", pc.is_in(author, value_set=pa.array(settings.skip_authors, pa.string()))),
    ]
    if settings.skip_author_suffixes:
        suffix = [pc.ends_with(author, pattern=s, ignore_case=True) for s in settings.skip_author_suffixes]
        reasons.append(("comment_author_suffix", _any(suffix)))
    keep = pc.is_valid(body)
    counts["comment_blank_body"] += body.null_count
    for reason, hit in reasons:
        hit = pc.and_(keep, pc.fill_null(hit, False))
        counts[reason] += pc.sum(hit).as_py() or 0
        keep = pc.and_not(keep, hit)
    return keep


def _any(masks: List[pa.Array]) -> pa.Array:
    out = masks[0]
    for mask in masks[1:]:
        out = pc.or_(out, mask)
    return out


def _timestamps(values: list) -> pa.Array:
    try:
        return pa.array(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if type(v) is int else timestamp(v) for v in values], pa.int64())


def _decode(
    decoder, block: bytes, path: str, first_line: int, bad: Optional[BadRecordReport], counts: Dict[str, int]
) -> list:
    before = bad.total if bad is not None else 0
    records = decode_block(decoder, block, path, first_line, bad)
    if bad is not None:
        counts["bad_lines"] += bad.total - before
    return records


def _start(counts: Optional[Dict[str, int]], names: Sequence[str]) -> Dict[str, int]:
    counts = {} if counts is None else counts
    for name in names:
        counts.setdefault(name, 0)
    return counts
