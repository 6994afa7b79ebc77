"""Choosing the comment encoder (phi_C) by name, and reopening the one a store was labelled with."""

import json
import os
from typing import Any, Dict, Union

from ..errors import ConfigError
from .comment_encoder import TfidfCommentEncoder
from .sentence_encoder import SentenceCommentEncoder

CommentEncoder = Union[TfidfCommentEncoder, SentenceCommentEncoder]
ENCODERS = {"tfidf": TfidfCommentEncoder, "sentence": SentenceCommentEncoder}
_KIND_FILE = "comments_encoder.json"


def build_comment_encoder(comments_cfg: Dict[str, Any]) -> CommentEncoder:
    """``comments_cfg["encoder"]`` (``tfidf`` | ``sentence``) with its settings under the same name."""
    kind = comments_cfg.get("encoder", "tfidf")
    if kind not in ENCODERS:
        raise ConfigError(f"config.labels.comments.encoder={kind!r}: use one of {', '.join(ENCODERS)}")
    return ENCODERS[kind](**dict(comments_cfg.get(kind) or {}))


def save_comment_encoder(encoder: CommentEncoder, folder: str) -> str:
    with open(os.path.join(folder, _KIND_FILE), "w") as f:
        json.dump({"encoder": encoder.kind}, f)
    return encoder.save(folder)


def load_comment_encoder(folder: str) -> CommentEncoder:
    with open(os.path.join(folder, _KIND_FILE)) as f:
        kind = json.load(f)["encoder"]
    return ENCODERS[kind].load(folder)
