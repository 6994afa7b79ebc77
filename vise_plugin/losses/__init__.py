from vise_plugin.losses.merged_loss import MergedLoss
from vise_plugin.losses.vise_loss import VisELoss, masked_cross_entropy, soft_target_cross_entropy
from vise_plugin.losses.web_tag_loss import WebTagLoss, embedding_distance

__all__ = [
    "MergedLoss",
    "VisELoss",
    "WebTagLoss",
    "embedding_distance",
    "masked_cross_entropy",
    "soft_target_cross_entropy",
]
