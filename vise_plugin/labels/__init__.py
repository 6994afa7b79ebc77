"""Label algorithms (Sec. 3.1): comment and reaction encoders, K-means, the labeler, engagement
records and the label store format. The label job that runs them at scale is :mod:`vise_plugin.labels.job`."""

from vise_plugin.labels.clustering import Centroids
from vise_plugin.labels.comment_encoder import TfidfCommentEncoder
from vise_plugin.labels.encoders import build_comment_encoder, load_comment_encoder
from vise_plugin.labels.labeler import EngagementLabeler, sample_comments
from vise_plugin.labels.reaction_encoder import reaction_vectors
from vise_plugin.labels.records import (
    BAD_RECORD_KINDS,
    REACTION_TYPES,
    BadRecord,
    EngagementRecord,
    parse_record,
    write_records,
)
from vise_plugin.labels.store import LabelStore, LabelStoreWriter, write_label_store

__all__ = [
    "Centroids",
    "TfidfCommentEncoder",
    "build_comment_encoder",
    "load_comment_encoder",
    "EngagementLabeler",
    "sample_comments",
    "reaction_vectors",
    "BAD_RECORD_KINDS",
    "REACTION_TYPES",
    "BadRecord",
    "EngagementRecord",
    "parse_record",
    "write_records",
    "LabelStore",
    "LabelStoreWriter",
    "write_label_store",
]
