"""Typed records of the dumps' lines: only the fields used, decoded by msgspec.

Unknown fields (and the ``_meta`` object of files from 2023-11 on) are ignored. Types are lenient
where real dumps vary: ``created_utc`` is an int, a float or a string of digits; most fields may be
null or missing.
"""

from typing import Dict, List, Optional, Tuple, TypeVar, Union

import msgspec

from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.records import BadRecord

#: seconds since 1970 as the dumps write them: ``1672531200``, ``1672531200.0`` or ``"1672531200"``
Timestamp = Union[int, float, str, None]


class Awarding(msgspec.Struct, gc=False):
    count: int = 0


class Comment(msgspec.Struct, gc=False):
    """One line of an ``RC_*`` file; ``link_id`` is ``t3_<submission id>``."""

    id: str
    link_id: str = ""
    parent_id: Optional[str] = None
    body: Optional[str] = None
    score: Optional[int] = 0
    controversiality: Optional[int] = 0
    created_utc: Timestamp = 0
    subreddit: Optional[str] = None
    author: Optional[str] = None
    all_awardings: Optional[Tuple[Awarding, ...]] = None
    gildings: Optional[Dict[str, int]] = None


class CommentRow(msgspec.Struct, gc=False):
    """The fields of :class:`Comment` that the join reads: decoding all of ``Comment`` (its awards list
    above all) takes more than twice as long."""

    id: str
    link_id: str = ""
    body: Optional[str] = None
    score: Optional[int] = 0
    created_utc: Timestamp = 0
    author: Optional[str] = None


class ImageSource(msgspec.Struct, gc=False):
    url: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None


class PreviewImage(msgspec.Struct, gc=False):
    source: Optional[ImageSource] = None


class Preview(msgspec.Struct, gc=False):
    images: Optional[Tuple[PreviewImage, ...]] = None


class GalleryItem(msgspec.Struct, gc=False):
    media_id: Optional[str] = None


class GalleryData(msgspec.Struct, gc=False):
    items: Optional[Tuple[GalleryItem, ...]] = None


class MediaSource(msgspec.Struct, gc=False):
    """``media_metadata[...].s``: the full-size image (``u``, HTML-escaped) and its size."""

    u: Optional[str] = None
    x: Optional[int] = None
    y: Optional[int] = None


class Media(msgspec.Struct, gc=False):
    """``media_metadata[media_id]``: ``status`` ``"valid"`` when usable, ``e`` ``"Image"`` or ``"AnimatedImage"``."""

    status: Optional[str] = None
    e: Optional[str] = None
    s: Optional[MediaSource] = None


class Submission(msgspec.Struct, gc=False):
    """One line of an ``RS_*`` file; ``post_hint`` is ``"image"``, ``"link"``, ``"hosted:video"``, ... or missing."""

    id: str
    title: Optional[str] = None
    url: Optional[str] = None
    url_overridden_by_dest: Optional[str] = None
    is_self: Optional[bool] = False
    is_video: Optional[bool] = False
    post_hint: Optional[str] = None
    preview: Optional[Preview] = None
    is_gallery: Optional[bool] = None
    gallery_data: Optional[GalleryData] = None
    media_metadata: Optional[Dict[str, Media]] = None
    score: Optional[int] = 0
    upvote_ratio: Optional[float] = None
    num_comments: Optional[int] = 0
    over_18: Optional[bool] = False
    total_awards_received: Optional[int] = None
    all_awardings: Optional[Tuple[Awarding, ...]] = None
    gildings: Optional[Dict[str, int]] = None
    subreddit: Optional[str] = None
    created_utc: Timestamp = 0
    author: Optional[str] = None


T = TypeVar("T", Comment, CommentRow, Submission)
COMMENT_DECODER = msgspec.json.Decoder(Comment)
COMMENT_ROW_DECODER = msgspec.json.Decoder(CommentRow)
SUBMISSION_DECODER = msgspec.json.Decoder(Submission)


def decode_block(
    decoder: "msgspec.json.Decoder[T]", block: bytes, path: str, first_line: int, bad: Optional[BadRecordReport] = None
) -> List[T]:
    """The records of a block of lines from :func:`~vise_plugin.reddit.zstd_ndjson.line_blocks`
    (blank lines skipped). A bad line is added to ``bad`` as a :class:`BadRecord` at ``path:line``
    (``malformed_json``, or ``missing_field`` for a field missing or of another type) and left out;
    without ``bad`` it is raised."""
    try:
        return decoder.decode_lines(block)
    except msgspec.DecodeError:
        pass
    records = []
    for number, line in enumerate(block.split(b"\n"), first_line):
        if not line.strip():
            continue
        try:
            records.append(decoder.decode(line))
            continue
        except msgspec.ValidationError as e:
            error = BadRecord(f"unexpected record ({e})", "missing_field", f"{path}:{number}")
        except msgspec.DecodeError as e:
            error = BadRecord(f"malformed JSON ({e})", "malformed_json", f"{path}:{number}")
        if bad is None:
            raise error
        bad.add(error)
    return records


def timestamp(value: Timestamp) -> int:
    """Seconds as an int; 0 for a missing or unreadable value."""
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0
