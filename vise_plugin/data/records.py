"""The engagement record: one JSON object per line of a ``.jsonl`` or ``.jsonl.gz`` file.

``{"id": "p1", "image": "relative/path.jpg", "comments": ["so cute!", ...],
   "reactions": {"haha": 3, "sorry": 0, "angry": 0, "wow": 1, "love": 12}}``
"""

import gzip
import io
import json
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Tuple

from iopath.common.file_io import g_pathmgr

from ..errors import InputError

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


def parse_record(line: str, where: str) -> EngagementRecord:
    """Parses one JSONL line; ``where`` (``file:line``) prefixes every error message."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: malformed JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "image"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise InputError(f"{where}: field {key!r} must be a non-empty string")
    comments = obj.get("comments", [])
    if not isinstance(comments, list) or not all(isinstance(c, str) for c in comments):
        raise InputError(f"{where}: field 'comments' must be a list of strings")
    reactions = obj.get("reactions", {})
    if not isinstance(reactions, dict):
        raise InputError(f"{where}: field 'reactions' must be an object")
    for name, count in reactions.items():
        if name not in REACTION_TYPES:
            raise InputError(f"{where}: unknown reaction {name!r}; expected one of {', '.join(REACTION_TYPES)}")
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not math.isfinite(count) or count < 0:
            raise InputError(f"{where}: reaction {name!r} must be a finite count >= 0, got {count!r}")
    return EngagementRecord(obj["id"], obj["image"], comments, {k: int(v) for k, v in reactions.items()})


def _open_text(path: str, mode: str):
    if not path.endswith(".gz"):
        return g_pathmgr.open(path, mode, encoding="utf-8")
    raw = g_pathmgr.open(path, mode + "b")
    return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode=mode + "b"), encoding="utf-8")


def iter_records(path: str, skip_bad: bool = False, bad: List[str] = None) -> Iterator[Tuple[int, EngagementRecord]]:
    """Yields ``(line number, record)`` for every non-blank line of ``path``.

    With ``skip_bad``, malformed lines are left out and their messages appended to ``bad``;
    otherwise the first one raises :class:`InputError` naming ``path:line``.
    """
    if not g_pathmgr.exists(path):
        raise InputError(f"{path}: engagement file not found")
    with _open_text(path, "r") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, parse_record(line, f"{path}:{lineno}")
            except InputError as e:
                if not skip_bad:
                    raise
                if bad is not None:
                    bad.append(str(e))


def write_records(path: str, records: Iterable[EngagementRecord]) -> int:
    """Writes records as JSONL (gzip when ``path`` ends in ``.gz``); returns how many."""
    n = 0
    with _open_text(path, "w") as f:
        for record in records:
            f.write(record.to_json() + "\n")
            n += 1
    return n
