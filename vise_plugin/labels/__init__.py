from .clustering import Centroids
from .comment_encoder import TfidfCommentEncoder
from .generator import LabelGenerator, held_out_indices
from .labeler import EngagementLabeler, sample_comments
from .reaction_encoder import reaction_vectors

__all__ = [
    "Centroids",
    "TfidfCommentEncoder",
    "LabelGenerator",
    "held_out_indices",
    "EngagementLabeler",
    "sample_comments",
    "reaction_vectors",
]
