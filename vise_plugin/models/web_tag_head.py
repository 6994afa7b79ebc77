"""The two-branch web-tag head of EmotionNet (Wei et al. 2020): tag classification and a text-aligned embedding."""

from typing import Any, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from classy_vision.heads import ClassyHead, register_head

from .multi_head import pooled_features


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
        return cls(config["in_features"], config["num_tags"], config["embed_dim"],
                   config.get("unique_id", "web_tag_head"))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = pooled_features(x, self.in_features)
        return {"tags": self.classifier(features), "tag_embedding": F.normalize(self.projection(features), dim=1)}


class MergedHeads(nn.Module):
    """Several heads on the same trunk features; their output dicts merged into one.

    Args:
        heads: modules each mapping the features to ``{name: tensor}``; names must not repeat.
    """

    def __init__(self, *heads: nn.Module):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for head in self.heads:
            part = head(x)
            repeated = set(part) & set(out)
            if repeated:
                raise ValueError(f"two heads predict {sorted(repeated)}")
            out.update(part)
        return out
