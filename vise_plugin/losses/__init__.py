from .merged_loss import MergedLoss
from .vise_loss import VisELoss, masked_cross_entropy, soft_target_cross_entropy
from .web_tag_loss import WebTagLoss, embedding_distance

__all__ = ["MergedLoss", "VisELoss", "WebTagLoss", "embedding_distance", "masked_cross_entropy",
           "soft_target_cross_entropy"]
