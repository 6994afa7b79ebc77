"""Choosing the comment encoder (phi_C) by name, and reopening the one a store was labelled with.

Encoders are registered in :data:`vise_plugin.registry.COMMENT_ENCODERS`: ``tfidf`` (the paper's)
and ``sentence`` (embeddings from an installed model package). An encoder class takes its settings
as keyword arguments and has ``kind``, ``fit``, ``transform``, ``dim``, ``top_terms``, ``save(folder)``
(returning a checksum) and ``load(folder)``.
"""

import json
import os
from typing import Any, Dict

from vise_plugin.labels.comment_encoder import TfidfCommentEncoder
from vise_plugin.registry import COMMENT_ENCODERS
from vise_plugin.text.sentence_encoder import SentenceCommentEncoder

COMMENT_ENCODERS.register("tfidf")(TfidfCommentEncoder)
COMMENT_ENCODERS.register("sentence")(SentenceCommentEncoder)

CommentEncoder = Any  # any class registered in COMMENT_ENCODERS
_KIND_FILE = "comments_encoder.json"


def build_comment_encoder(comments_cfg: Dict[str, Any]) -> CommentEncoder:
    """``comments_cfg["encoder"]`` (a registered name) with its settings under the same name."""
    kind = comments_cfg.get("encoder", "tfidf")
    cls = COMMENT_ENCODERS.get(kind, "config.labels.comments.encoder")
    return cls(**dict(comments_cfg.get(kind) or {}))


def save_comment_encoder(encoder: CommentEncoder, folder: str) -> str:
    with open(os.path.join(folder, _KIND_FILE), "w") as f:
        json.dump({"encoder": encoder.kind}, f)
    return encoder.save(folder)


def load_comment_encoder(folder: str) -> CommentEncoder:
    with open(os.path.join(folder, _KIND_FILE)) as f:
        kind = json.load(f)["encoder"]
    return COMMENT_ENCODERS.get(kind, f"{folder}/{_KIND_FILE}: encoder").load(folder)
