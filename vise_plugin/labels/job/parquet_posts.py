"""Engagement posts as parquet (LAION-, DataComp- or Hugging Face-style tables), read with pyarrow.

``config.labels.columns`` maps the record's fields to the table's columns::

    columns: {id: id, image: image, comments: comments, reactions: reactions}

``id`` and ``image``: string columns (an integer id is read as its decimal string); ``comments``: a
list of strings (null: no comments); ``reactions``: a struct or map column of counts by reaction
name, or a mapping ``{reaction name: column}`` of integer columns (null counts read as 0). A shard is
a range of row groups; rows are named ``<file>:row <n>`` (1-based) in error messages.
"""

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import ConfigError, InputError

DEFAULT_COLUMNS = {"id": "id", "image": "image", "comments": "comments", "reactions": "reactions"}


def is_parquet(path: str) -> bool:
    return path.endswith(".parquet")


def column_mapping(columns: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """``config.labels.columns`` with the defaults filled in; a one-line error for an unknown field."""
    mapping = dict(DEFAULT_COLUMNS)
    for field, column in (columns or {}).items():
        if field not in DEFAULT_COLUMNS:
            raise ConfigError(f"config.labels.columns.{field}: unknown field; map {', '.join(DEFAULT_COLUMNS)}")
        if column is not None:
            mapping[field] = dict(column) if isinstance(column, Mapping) else str(column)
    return mapping


def _open(path: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(g_pathmgr.get_local_path(path))
    except Exception as e:  # pyarrow raises ArrowInvalid (a ValueError) or OSError for a file that is not parquet
        raise InputError(f"{path}: not a readable parquet file ({e})") from None


def row_group_ranges(path: str, shard_bytes: int) -> List[Tuple[int, int]]:
    """``[start, end)`` row-group ranges of about ``shard_bytes`` (uncompressed) each, in order."""
    meta = _open(path).metadata
    ranges: List[Tuple[int, int]] = []
    start, size = 0, 0
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).total_byte_size
        if size >= shard_bytes:
            ranges.append((start, g + 1))
            start, size = g + 1, 0
    if start < meta.num_row_groups or not ranges:
        ranges.append((start, meta.num_row_groups))
    return ranges


def _needed(mapping: Mapping[str, Any]) -> List[str]:
    reactions = mapping["reactions"]
    names = [mapping["id"], mapping["image"], mapping["comments"]]
    names += list(reactions.values()) if isinstance(reactions, Mapping) else [reactions]
    return list(dict.fromkeys(names))


def _counts(value: Any) -> Dict[str, Any]:
    """A struct (dict) or map (list of pairs) cell as ``{name: count}``."""
    if value is None:
        return {}
    if isinstance(value, list):
        return {k: v for k, v in value if v is not None}
    return {k: v for k, v in value.items() if v is not None}


def parquet_objects(
    path: str, groups: Tuple[int, int], mapping: Mapping[str, Any], batch_rows: int = 8192
) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``(where, record object)`` of every row of row groups ``[start, end)`` of ``path``, in order; the
    object has the record's fields (see :func:`vise_plugin.labels.records.record_from_object`)."""
    pf = _open(path)
    names = _needed(mapping)
    missing = [n for n in names if n not in pf.schema_arrow.names]
    if missing:
        raise InputError(
            f"{path}: no column {missing[0]!r} (config.labels.columns maps the record's fields to the "
            f"table's columns; it has {', '.join(pf.schema_arrow.names[:12])})"
        )
    first_row = sum(pf.metadata.row_group(g).num_rows for g in range(groups[0]))
    reactions = mapping["reactions"]
    row = first_row
    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=list(range(*groups)), columns=names):
        cols = {n: batch.column(n).to_pylist() for n in names}
        for i in range(batch.num_rows):
            row += 1
            ident = cols[mapping["id"]][i]
            if isinstance(reactions, Mapping):
                counts = {name: cols[col][i] or 0 for name, col in reactions.items()}
            else:
                counts = _counts(cols[reactions][i])
            yield (
                f"{path}:row {row}",
                {
                    "id": str(ident) if isinstance(ident, int) else ident,
                    "image": cols[mapping["image"]][i],
                    "comments": cols[mapping["comments"]][i] or [],
                    "reactions": counts,
                },
            )
