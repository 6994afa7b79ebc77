"""The engagement record: one JSON object per line of a ``.jsonl`` or ``.jsonl.gz`` file (or one row
of a parquet file, see :mod:`vise_plugin.labels.job.parquet_posts`).

``{"id": "p1", "image": "relative/path.jpg", "comments": ["so cute!", ...],
   "reactions": {"haha": 3, "sorry": 0, "angry": 0, "wow": 1, "love": 12}}``

The reaction names are the five buttons of the paper unless ``config.labels.reactions.types`` (or,
for Reddit dumps, ``config.labels.reddit.reactions``) names others.
"""

import gzip
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Sequence

from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError

REACTION_TYPES = ("haha", "sorry", "angry", "wow", "love")


@dataclass
class EngagementRecord:
    id: str
    image: str
    comments: List[str] = field(default_factory=list)
    reactions: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "image": self.image, "comments": self.comments, "reactions": self.reactions},
            ensure_ascii=False,
        )


class BadRecord(InputError):
    """A malformed engagement line; ``kind`` names what is wrong (see :data:`BAD_RECORD_KINDS`)."""

    def __init__(self, detail: str, kind: str, where: str = ""):
        super().__init__(f"{where}: {detail}" if where else detail)
        self.detail, self.kind, self.where = detail, kind, where

    def at(self, where: str) -> "BadRecord":
        """The same error located at ``where`` (``file:line``)."""
        return BadRecord(self.detail, self.kind, where)


BAD_RECORD_KINDS = (
    "not_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "bad_comments",
    "bad_reactions",
    "empty_post",
)


def parse_record(line: str, where: str = "", reaction_types: Sequence[str] = REACTION_TYPES) -> EngagementRecord:
    """Parses one JSONL line; ``where`` (``file:line``) prefixes every error message.

    Raises :class:`BadRecord` for malformed JSON, and as :func:`record_from_object` does.
    """
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadRecord(f"malformed JSON ({e.msg})", "malformed_json", where) from None
    return record_from_object(obj, where, reaction_types)


def record_from_object(obj: Any, where: str = "", reaction_types: Sequence[str] = REACTION_TYPES) -> EngagementRecord:
    """The record of a decoded JSON object (or a parquet row as a dict).

    Raises :class:`BadRecord` for a non-object, missing or non-string ``id``/``image``, comments that
    are not a list of strings, reaction counts whose name is not in ``reaction_types`` or that are
    negative, non-finite or fractional, and posts with neither a non-blank comment nor a reaction.
    """
    if not isinstance(obj, dict):
        raise BadRecord(f"expected a JSON object, got {type(obj).__name__}", "not_an_object", where)
    for key in ("id", "image"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise BadRecord(f"field {key!r} must be a non-empty string", "missing_field", where)
    comments = obj.get("comments", [])
    if not isinstance(comments, list) or not all(isinstance(c, str) for c in comments):
        raise BadRecord("field 'comments' must be a list of strings", "bad_comments", where)
    reactions = obj.get("reactions", {})
    if not isinstance(reactions, dict):
        raise BadRecord("field 'reactions' must be an object", "bad_reactions", where)
    for name, count in reactions.items():
        if name not in reaction_types:
            raise BadRecord(
                f"unknown reaction {name!r}; expected one of {', '.join(reaction_types)}", "bad_reactions", where
            )
        if (
            isinstance(count, bool)
            or not isinstance(count, (int, float))
            or not math.isfinite(count)
            or count < 0
            or count != int(count)
        ):
            raise BadRecord(f"reaction {name!r} must be a whole count >= 0, got {count!r}", "bad_reactions", where)
    if not any(c.strip() for c in comments) and not any(reactions.values()):
        raise BadRecord(f"post {obj['id']!r} has no comments and no reactions", "empty_post", where)
    return EngagementRecord(obj["id"], obj["image"], comments, {k: int(v) for k, v in reactions.items()})


def _open_text(path: str, mode: str):
    if not path.endswith(".gz"):
        return g_pathmgr.open(path, mode, encoding="utf-8")
    raw = g_pathmgr.open(path, mode + "b")
    return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode=mode + "b"), encoding="utf-8")


def write_records(path: str, records: Iterable[EngagementRecord]) -> int:
    """Writes records as JSONL (gzip when ``path`` ends in ``.gz``); returns how many."""
    n = 0
    with _open_text(path, "w") as f:
        for record in records:
            f.write(record.to_json() + "\n")
            n += 1
    return n
