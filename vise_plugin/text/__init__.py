"""Text encoders shared by the label job (comments), web tags (tag embeddings) and evaluation (meme text)."""

from vise_plugin.text.sentence_encoder import SentenceCommentEncoder
from vise_plugin.text.text_features import text_features

__all__ = ["SentenceCommentEncoder", "text_features"]
