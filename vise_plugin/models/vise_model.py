"""Trunk + multi-head, the network trained by VisE pretraining."""

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from classy_vision.models import ClassyModel, register_model

from .multi_head import VisEMultiHead
from .trunks import build_trunk, trunk_out_channels
from .web_tag_head import MergedHeads, WebTagHead


@register_model("vise_model")
class VisEModel(ClassyModel):
    """``(B, 3, H, W)`` -> ``{task: logits (B, K_task)}``, float32 even under autocast.

    ``trunk`` is exported as is (see :func:`vise_plugin.models.weights.export_hub_weights`); ``head`` is a
    :class:`VisEMultiHead`, a :class:`WebTagHead` or both merged (:class:`MergedHeads`). The model is not
    wrapped by classy-vision's head executor.
    """

    wrapper_cls = None

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VisEModel":
        tags = config.get("tags")
        return cls.build(config["trunk"], config["tasks"], (tags["num_tags"], tags["embed_dim"]) if tags else None)

    @classmethod
    def build(cls, trunk_name: str, tasks: Mapping[str, int],
              tag_head: Optional[Tuple[int, int]] = None) -> "VisEModel":
        """``tasks``: the VisE heads ``{name: K}`` (may be empty); ``tag_head``: ``(num_tags, embed_dim)``
        adds a :class:`WebTagHead` (EmotionNet supervision), merged with the VisE heads when both are given."""
        trunk = build_trunk(trunk_name)
        channels = trunk_out_channels(trunk)
        heads = ([VisEMultiHead(channels, tasks)] if tasks else []) + (
            [WebTagHead(channels, *tag_head)] if tag_head else [])
        if not heads:
            raise ValueError("VisEModel needs VisE tasks, a tag head, or both")
        return cls(trunk, heads[0] if len(heads) == 1 else MergedHeads(*heads))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.trunk(x)
        # Heads run in fp32 under autocast: fp16 logits overflow to inf past 65504.
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float())
