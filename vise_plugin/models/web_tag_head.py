"""The two-branch web-tag head of EmotionNet (Wei et al. 2020): tag classification and a text-aligned embedding."""

from typing import Any, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from classy_vision.heads import ClassyHead, register_head

from vise_plugin.models.multi_head import pooled_features
from vise_plugin.registry import target_size


@register_head("web_tag_head")
class WebTagHead(ClassyHead):
    """Pooled trunk features -> tag logits and an L2-normalised embedding in the tag-text space.

    Args:
        in_features: ``C``, channels of the trunk output.
        num_tags: ``K``, size of the tag vocabulary.
        embed_dim: ``D``, dimension of the text encoder's tag embeddings.

    Forward takes ``(B, C, H, W)`` or ``(B, C)`` and returns ``{"tags": (B, K) logits,
    "tag_embedding": (B, D) unit vectors}``.
    """

    def __init__(self, in_features: int, num_tags: int, embed_dim: int, unique_id: str = "web_tag_head"):
        super().__init__(unique_id=unique_id, num_classes=None)
        self.in_features = in_features
        self.classifier = nn.Linear(in_features, num_tags)
        self.projection = nn.Linear(in_features, embed_dim)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "WebTagHead":
        """``in_features``, ``num_tags`` and ``embed_dim``; the last two default to the ``tags`` target's
        size and the width of its text embeddings (``targets``, added by the runner)."""
        num_tags = config.get("num_tags") or target_size(config, "tags")
        embed_dim = config.get("embed_dim") or target_size(config, "tags", "embeddings").shape[1]
        return cls(config["in_features"], num_tags, embed_dim, config.get("unique_id", "web_tag_head"))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = pooled_features(x, self.in_features)
        return {"tags": self.classifier(features), "tag_embedding": F.normalize(self.projection(features), dim=1)}
