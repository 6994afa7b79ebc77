from .vise_loss import VisELoss, masked_cross_entropy, soft_target_cross_entropy

__all__ = ["VisELoss", "masked_cross_entropy", "soft_target_cross_entropy"]
