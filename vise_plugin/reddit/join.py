"""Joining the comments of ``RC_*`` dumps to the image submissions of ``RS_*`` dumps, larger than memory.

DuckDB holds the posts and the comments on them in an in-memory database that spills to
``<work_dir>/duckdb_tmp`` beyond ``settings.memory_limit`` (a database file would write each comment
twice, to its log and at its checkpoints); Python only streams record batches into it.
The output folder gets ``part-00000.parquet``, ... (posts ordered by id) and, last, ``summary.json``.
"""

import glob
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from vise_plugin.errors import ConfigError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.work_dir import write_json_atomic
from vise_plugin.reddit.dumps import comment_batches, submission_batches, submission_schema
from vise_plugin.reddit.settings import RedditSettings

logger = logging.getLogger(__name__)

TMP_DIR = "duckdb_tmp"
SUMMARY = "summary.json"


def _insert_all(con: duckdb.DuckDBPyConnection, batches: Iterable[pa.RecordBatch], sql: str) -> None:
    """Runs ``sql``, which reads the table ``incoming``, on each batch in turn; DuckDB inserts one batch
    on a thread of its own while Python decodes the next. (DuckDB pulling from a Python-backed
    ``RecordBatchReader`` on all cores spends a third more time: its threads wait on the GIL.)"""
    cursor = con.cursor()

    def insert(batch: pa.RecordBatch) -> None:
        cursor.register("incoming", batch)
        try:
            cursor.execute(sql)
        finally:
            cursor.unregister("incoming")

    try:
        with ThreadPoolExecutor(1) as pool:
            pending = None
            for batch in batches:
                if pending is not None:
                    pending.result()
                pending = pool.submit(insert, batch)
            if pending is not None:
                pending.result()
    finally:
        cursor.close()


def _numbered(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches with a ``seq`` column: the row's position in the input."""
    seq = 0
    for batch in batches:
        yield batch.append_column("seq", pa.array(range(seq, seq + batch.num_rows), pa.int64()))
        seq += batch.num_rows


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect(work_dir: str, settings: RedditSettings) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = {_quote(settings.memory_limit)}")
    except duckdb.Error as e:
        con.close()
        raise ConfigError(
            f"config.labels.reddit.memory_limit={settings.memory_limit!r}: {str(e).splitlines()[0]}"
        ) from None
    con.execute(f"SET temp_directory = {_quote(os.path.join(work_dir, TMP_DIR))}")
    con.execute("SET preserve_insertion_order = false")
    if settings.threads is not None:
        con.execute(f"SET threads = {int(settings.threads)}")
    return con


def _load_posts(con: duckdb.DuckDBPyConnection, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> None:
    """Table ``posts``: one row per submission id, the last one read."""
    con.register("incoming", schema.append(pa.field("seq", pa.int64())).empty_table())
    con.execute("CREATE TABLE posts_read AS SELECT * FROM incoming")
    con.unregister("incoming")
    _insert_all(con, _numbered(batches), "INSERT INTO posts_read SELECT * FROM incoming")
    con.execute(
        "CREATE TABLE posts AS SELECT * EXCLUDE (seq) FROM posts_read "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1"
    )
    con.execute("DROP TABLE posts_read")


def _hashes(ids: pa.Array) -> np.ndarray:
    """Python's hashes of ``ids``: the same for the same string within a process."""
    return np.fromiter(map(hash, ids.to_pylist()), np.int64, len(ids))


class _PostIds:
    """Which link ids may name a post of table ``posts``, found in time logarithmic in the number of
    posts: the sorted hashes of their ids. (Joining each batch of comments to ``posts`` reads all the
    posts for every batch.) Ids may share a hash; :func:`_sample_comments` joins exactly."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        hashes = [_hashes(batch.column(0)) for batch in con.sql("SELECT id FROM posts").to_arrow_reader(1 << 16)]
        self.hashes = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, np.int64)

    def on_posts(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows of ``batch`` whose ``link_id`` hashes like the id of a post."""
        if not len(self.hashes):
            return batch.slice(0, 0)
        wanted = _hashes(batch.column("link_id"))
        order = np.argsort(wanted)
        # the needles in order: each binary search starts where the previous one ended
        found = self.hashes[np.minimum(np.searchsorted(self.hashes, wanted[order]), len(self.hashes) - 1)]
        hit = np.empty(len(wanted), bool)
        hit[order] = found == wanted[order]
        return batch.filter(hit)


def _load_comments(con: duckdb.DuckDBPyConnection, batches: Iterable[pa.RecordBatch], settings: RedditSettings) -> None:
    """Table ``comments`` (``link_id``, ``id``, ``body`` and ``h``, the seeded hash of ``id``): the
    comments whose ``link_id`` may name a post of ``posts``."""
    con.execute("CREATE TABLE comments (link_id VARCHAR, id VARCHAR, body VARCHAR, h UBIGINT)")
    posts = _PostIds(con)
    _insert_all(
        con,
        (b for b in map(posts.on_posts, batches) if b.num_rows),
        f"INSERT INTO comments SELECT link_id, id, body, hash(id, {int(settings.seed)}) FROM incoming",
    )


#: a power-of-two band of ``h``: the band of ``h`` grows with ``h``, so the comments of a post in its lowest
#: bands are those of least ``h``
BAND = "floor(log2(h::DOUBLE + 1))::INTEGER"


def _sample_comments(con: duckdb.DuckDBPyConnection, max_comments: int) -> int:
    """Table ``sampled``: per post of ``posts``, the bodies of its ``max_comments`` comments of least
    ``(h, id)``, in that order: a random order fixed by the seed, of which any prefix is a random sample
    too. Returns the number of comments on a post.

    Ranking every comment of a post (a window) and listing them in rank order (an ordered aggregate) runs
    out of memory once the comments are several times ``memory_limit``. Here a post's comments are
    counted per band of ``h``, and only those in the lowest bands that hold ``max_comments`` of them
    (under twice that, mostly) are listed, then sorted inside the post's list.
    """
    con.execute(
        f"CREATE TEMP TABLE bands AS SELECT link_id, {BAND} AS band, count(*) AS n FROM comments "
        "WHERE link_id IN (SELECT id FROM posts) GROUP BY ALL"
    )
    con.execute(f"""
        CREATE TEMP TABLE cutoffs AS
        SELECT link_id, min(band) FILTER (WHERE below >= {max_comments}) AS band
        FROM (SELECT link_id, band, sum(n) OVER (PARTITION BY link_id ORDER BY band) AS below FROM bands)
        GROUP BY link_id""")
    con.execute(f"""
        CREATE TABLE sampled AS
        SELECT link_id, list_transform(list_sort(list({{'h': h, 'id': id, 'body': body}}))[1:{max_comments}],
                                       lambda c: c.body) AS comments
        FROM comments JOIN cutoffs USING (link_id)
        WHERE cutoffs.band IS NULL OR {BAND} <= cutoffs.band
        GROUP BY link_id""")
    joined = con.execute("SELECT coalesce(sum(n), 0) FROM bands").fetchone()[0]
    con.execute("DROP TABLE bands")
    con.execute("DROP TABLE cutoffs")
    return int(joined)


def _write_parts(con: duckdb.DuckDBPyConnection, out_dir: str, settings: RedditSettings) -> List[str]:
    reactions = ", ".join(f"{_quote(name)}: reaction_{name}" for name in settings.reactions)
    con.execute(f"""
        CREATE TABLE joined AS
        SELECT row_number() OVER (ORDER BY p.id) - 1 AS row, p.id, p.image,
               coalesce(s.comments, []::VARCHAR[]) AS comments, {{{reactions}}} AS reactions, p.urls, p.title
        FROM posts p LEFT JOIN sampled s ON s.link_id = p.id""")
    con.execute("SET preserve_insertion_order = true")
    n = con.execute("SELECT count(*) FROM joined").fetchone()[0]
    names = []
    for start in range(0, max(n, 1), settings.rows_per_file):
        name = f"part-{len(names):05d}.parquet"
        path = os.path.join(out_dir, name)
        con.execute(
            f"COPY (SELECT id, image, comments, reactions, urls, title FROM joined "
            f"WHERE row >= {start} AND row < {start + settings.rows_per_file} ORDER BY row) "
            f"TO {_quote(path + '.tmp')} (FORMAT parquet)"
        )
        os.replace(path + ".tmp", path)
        names.append(name)
    return names


def join_dumps(
    submission_files: Sequence[str],
    comment_files: Sequence[str],
    out_dir: str,
    settings: RedditSettings,
    work_dir: str,
    bad: Optional[BadRecordReport] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Joins the kept comments of ``comment_files`` to the image submissions of ``submission_files``.

    Writes ``out_dir/part-XXXXX.parquet`` (about ``settings.rows_per_file`` posts each, ordered by id)
    with columns ``id``, ``image`` (strings), ``comments`` (list of strings, maybe empty),
    ``reactions`` (struct of one int64 per name of ``settings.reactions``), ``urls`` (list of strings)
    and ``title``; then ``out_dir/summary.json``, the returned summary: ``posts``, ``submissions_read``,
    ``comments_read``, ``comments_kept`` (past the filters), ``comments_joined`` (of those, on an image
    post), ``comments_sampled`` (in the output), ``files`` and ``skipped`` (reason -> count).
    Malformed lines go to ``bad``; without it the first one raises. The data DuckDB spilled to
    ``work_dir`` is removed when done. Both folders are local.
    """
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(work_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, SUMMARY)) + glob.glob(os.path.join(out_dir, "part-*.parquet*")):
        os.remove(stale)
    sub_counts: Dict[str, int] = {}
    comment_counts: Dict[str, int] = {}
    con = _connect(work_dir, settings)
    try:
        _load_posts(
            con,
            submission_batches(submission_files, settings, bad, sub_counts, progress),
            submission_schema(settings.reactions),
        )
        _load_comments(con, comment_batches(comment_files, settings, bad, comment_counts, progress), settings)
        joined = _sample_comments(con, int(settings.max_comments))
        posts = con.execute("SELECT count(*) FROM posts").fetchone()[0]
        sampled = con.execute("SELECT coalesce(sum(len(comments)), 0) FROM sampled").fetchone()[0]
        con.execute("DROP TABLE comments")
        files = _write_parts(con, out_dir, settings)
    finally:
        con.close()
        shutil.rmtree(os.path.join(work_dir, TMP_DIR), ignore_errors=True)
    skipped = {k: v for k, v in sub_counts.items() if k.startswith("submission_")}
    skipped["duplicate_submissions"] = sub_counts["image_submissions"] - posts
    skipped.update((k, v) for k, v in comment_counts.items() if k.startswith("comment_"))
    skipped["comment_not_on_image_post"] = comment_counts["comments_kept"] - joined
    skipped["bad_lines"] = sub_counts["bad_lines"] + comment_counts["bad_lines"]
    summary = {
        "posts": posts,
        "submissions_read": sub_counts["submissions"],
        "comments_read": comment_counts["comments"],
        "comments_kept": comment_counts["comments_kept"],
        "comments_joined": joined,
        "comments_sampled": int(sampled),
        "files": files,
        "skipped": skipped,
    }
    write_json_atomic(os.path.join(out_dir, SUMMARY), summary)
    logger.info(
        "reddit join: %d image posts of %d submissions; %d of %d comments kept, %d on image posts, %d "
        "sampled; %d bad lines; %d file(s) in %s",
        posts,
        summary["submissions_read"],
        summary["comments_kept"],
        summary["comments_read"],
        joined,
        summary["comments_sampled"],
        skipped["bad_lines"],
        len(files),
        out_dir,
    )
    return summary
