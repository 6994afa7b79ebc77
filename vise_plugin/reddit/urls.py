"""The image URLs of the dumps' image submissions, for downloading (e.g. with img2dataset).

``python -m vise_plugin.reddit.urls RS_2023-01.zst [more RS files or globs] --output urls.parquet [--no-nsfw]``
prints one summary line; malformed lines are skipped and reported on stderr.
"""

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vise_plugin.errors import UserError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.shards import expand_inputs
from vise_plugin.reddit.dumps import submission_batches
from vise_plugin.reddit.settings import RedditSettings

URL_SCHEMA = pa.schema(
    [("url", pa.string()), ("post_id", pa.string()), ("image_index", pa.int32()), ("title", pa.string())]
)


def url_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One row per image of a :func:`submission_batches` batch (:data:`URL_SCHEMA`); ``image_index`` is
    the image's position in its post (0 for a single image)."""
    urls = batch.column("urls")
    post = pc.list_parent_indices(urls)
    starts = urls.offsets.to_numpy()[:-1] - urls.offset
    index = np.arange(len(post), dtype=np.int64) - starts[post.to_numpy()]
    return pa.RecordBatch.from_arrays(
        [
            pc.list_flatten(urls),
            batch.column("id").take(post),
            pa.array(index.astype(np.int32)),
            batch.column("title").take(post),
        ],
        schema=URL_SCHEMA,
    )


def export_urls(
    submission_files: Sequence[str],
    output: str,
    settings: RedditSettings,
    counts: Optional[Dict[str, int]] = None,
    bad: Optional[BadRecordReport] = None,
    progress: bool = False,
) -> int:
    """Writes the image URLs of the kept image submissions of ``submission_files`` to the parquet file
    ``output`` (:data:`URL_SCHEMA`), batch by batch; returns the number of URLs. ``counts`` and ``bad``
    are :func:`submission_batches`' (without ``bad`` a malformed line raises). A submission repeated in
    the dumps is listed again."""
    tmp = output + ".tmp"
    n = 0
    with pq.ParquetWriter(tmp, URL_SCHEMA) as writer:
        for batch in submission_batches(submission_files, settings, bad, counts, progress):
            rows = url_rows(batch)
            writer.write_batch(rows)
            n += rows.num_rows
    os.replace(tmp, output)
    return n


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vise_plugin.reddit.urls",
        description="Writes the image URLs of Reddit submission dumps to parquet.",
    )
    parser.add_argument("files", nargs="+", help="RS_*.zst submission dumps (or globs)")
    parser.add_argument("--output", required=True, help="the parquet file to write")
    parser.add_argument("--no-nsfw", action="store_true", help="leave out over_18 posts")
    args = parser.parse_args(argv)
    counts: Dict[str, int] = {}
    bad = BadRecordReport()
    try:
        n = export_urls(
            expand_inputs(args.files),
            args.output,
            RedditSettings(include_nsfw=not args.no_nsfw),
            counts,
            bad,
            progress=True,
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {n} image URLs of {counts['image_submissions']} image posts ({counts['submissions']} "
        f"submissions read) to {args.output}"
    )
    for line in bad.lines():
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
