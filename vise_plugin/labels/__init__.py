from .clustering import Centroids
from .comment_encoder import TfidfCommentEncoder
from .encoders import build_comment_encoder, load_comment_encoder
from .labeler import EngagementLabeler, sample_comments
from .pipeline import LabelPipeline
from .reaction_encoder import reaction_vectors
from .selection import fit_score
from .sentence_encoder import SentenceCommentEncoder
from .stages import LabelSettings

__all__ = [
    "Centroids",
    "TfidfCommentEncoder",
    "SentenceCommentEncoder",
    "build_comment_encoder",
    "load_comment_encoder",
    "EngagementLabeler",
    "sample_comments",
    "LabelPipeline",
    "LabelSettings",
    "reaction_vectors",
    "fit_score",
]
