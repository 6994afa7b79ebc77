"""Reddit dumps (Pushshift / Arctic Shift monthly ``RS_*.zst`` / ``RC_*.zst``) as engagement posts: image
submissions, their reactions and a sample of their comments, joined larger than memory."""

from vise_plugin.reddit.dumps import COMMENT_SCHEMA, comment_batches, submission_batches, submission_schema
from vise_plugin.reddit.fixture import write_reddit_month
from vise_plugin.reddit.images import image_urls, is_image_post
from vise_plugin.reddit.join import join_dumps
from vise_plugin.reddit.reactions import reaction_columns
from vise_plugin.reddit.records import Comment, Submission, decode_block
from vise_plugin.reddit.settings import REACTION_CHANNELS, RedditSettings
from vise_plugin.reddit.zstd_ndjson import line_blocks, open_zstd, write_zstd_ndjson

__all__ = [
    "COMMENT_SCHEMA",
    "comment_batches",
    "submission_batches",
    "submission_schema",
    "write_reddit_month",
    "image_urls",
    "is_image_post",
    "join_dumps",
    "reaction_columns",
    "Comment",
    "Submission",
    "decode_block",
    "REACTION_CHANNELS",
    "RedditSettings",
    "URL_SCHEMA",
    "export_urls",
    "line_blocks",
    "open_zstd",
    "write_zstd_ndjson",
]


def __getattr__(name: str):
    # urls runs as ``python -m vise_plugin.reddit.urls``, which warns when the package imported it already
    if name in ("URL_SCHEMA", "export_urls"):
        from vise_plugin.reddit import urls

        return getattr(urls, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
