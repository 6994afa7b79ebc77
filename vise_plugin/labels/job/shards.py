"""Splitting engagement files into shards that are read independently.

A plain ``.jsonl`` file is cut into byte ranges of about ``shard_bytes``; a shard owns every
line whose first byte falls in its range. A compressed file cannot be entered in the middle
and is one shard. Line numbers in error messages are counted from the start of the file. A
``.parquet`` file is cut into ranges of row groups of about ``shard_bytes`` (uncompressed), read
through a column mapping (:mod:`.parquet_posts`).
"""

import glob
import gzip
import io
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.parquet_posts import column_mapping, is_parquet, parquet_objects, row_group_ranges
from vise_plugin.labels.records import (
    BAD_RECORD_KINDS,
    REACTION_TYPES,
    BadRecord,
    EngagementRecord,
    parse_record,
    record_from_object,
)


@dataclass(frozen=True)
class Shard:
    """Lines of ``path`` starting in bytes ``[start, end)``; ``end`` is None for a whole file. For a
    parquet file (``columns``: its column mapping) ``[start, end)`` are row groups."""

    index: int
    path: str
    start: int = 0
    end: Optional[int] = None
    columns: Optional[Dict[str, Any]] = None

    @property
    def name(self) -> str:
        return f"shard_{self.index:05d}"

    def to_dict(self) -> Dict:
        return asdict(self)


def expand_inputs(posts: Union[str, Sequence[str]]) -> List[str]:
    """A file, a glob pattern or a list of either -> the sorted list of files (missing ones are an error)."""
    patterns = [posts] if isinstance(posts, str) else list(posts)
    files: List[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise InputError(f"{pattern}: no engagement file matches")
            files += matched
        elif g_pathmgr.exists(pattern):
            files.append(pattern)
        else:
            raise InputError(f"{pattern}: engagement file not found")
    return files


def plan_shards(files: Sequence[str], shard_bytes: int, columns: Optional[Dict[str, Any]] = None) -> List[Shard]:
    """Cuts ``files`` into shards of about ``shard_bytes`` (compressed files stay whole); parquet files
    are read with the column mapping ``columns`` (:func:`column_mapping`)."""
    shards: List[Shard] = []
    for path in files:
        if is_parquet(path):
            mapping = column_mapping(columns)
            shards += [
                Shard(len(shards) + k, path, a, b, mapping)
                for k, (a, b) in enumerate(row_group_ranges(path, shard_bytes))
            ]
            continue
        size = file_size(path)
        if path.endswith(".gz") or size <= shard_bytes:
            shards.append(Shard(len(shards), path))
            continue
        for start in range(0, size, shard_bytes):
            shards.append(Shard(len(shards), path, start, min(start + shard_bytes, size)))
    return shards


def file_size(path: str) -> int:
    with g_pathmgr.open(path, "rb") as f:
        return f.seek(0, io.SEEK_END)


def _lines(shard: Shard) -> Iterator[bytes]:
    raw = g_pathmgr.open(shard.path, "rb")
    with gzip.GzipFile(fileobj=raw) if shard.path.endswith(".gz") else raw as f:
        pos = shard.start
        if pos > 0:
            f.seek(pos - 1)
            pos += len(f.readline()) - 1
        while shard.end is None or pos < shard.end:
            line = f.readline()
            if not line:
                return
            pos += len(line)
            yield line


def _first_line_number(shard: Shard) -> int:
    """1-based number of the first line the shard owns (counts newlines before it; used for errors only)."""
    if shard.start == 0:
        return 1
    count, remaining = 0, shard.start - 1
    with g_pathmgr.open(shard.path, "rb") as f:
        while remaining > 0:
            block = f.read(min(remaining, 1 << 24))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    # the owned line starts after the first newline at or after byte start - 1
    return count + 2


def read_shard(
    shard: Shard,
    bad: Optional[BadRecordReport] = None,
    skip: Iterable[str] = BAD_RECORD_KINDS,
    reaction_types: Sequence[str] = REACTION_TYPES,
) -> Iterator[EngagementRecord]:
    """Yields the records of the shard's non-blank lines (or parquet rows).

    A malformed line whose kind is in ``skip`` is counted in ``bad`` and left out; any other
    (or every one, without ``bad``) raises :class:`BadRecord` naming ``file:line``.
    """
    if shard.columns is not None:
        yield from _parquet_records(shard, bad, skip, reaction_types)
        return
    first_line: List[int] = []
    for offset, raw in enumerate(_lines(shard)):
        if not raw.strip():
            continue
        try:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRecord("not valid UTF-8", "not_utf8") from None
            yield parse_record(line, reaction_types=reaction_types)
        except BadRecord as e:
            if not first_line:
                first_line.append(_first_line_number(shard))
            located = e.at(f"{shard.path}:{first_line[0] + offset}")
            if bad is None or e.kind not in skip:
                raise located from None
            bad.add(located)


def _parquet_records(
    shard: Shard, bad: Optional[BadRecordReport], skip: Iterable[str], reaction_types: Sequence[str]
) -> Iterator[EngagementRecord]:
    for where, obj in parquet_objects(shard.path, (shard.start, shard.end), shard.columns):
        try:
            yield record_from_object(obj, where, reaction_types)
        except BadRecord as e:
            if bad is None or e.kind not in skip:
                raise
            bad.add(e)


def iter_records(path: str, bad: Optional[BadRecordReport] = None) -> Iterator[EngagementRecord]:
    """Records of a whole engagement file (``.jsonl`` or ``.jsonl.gz``); see :func:`read_shard`."""
    if not g_pathmgr.exists(path):
        raise InputError(f"{path}: engagement file not found")
    return read_shard(Shard(0, path), bad)
