"""Trunk + multi-head, the network trained by VisE pretraining."""

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
from classy_vision.models import ClassyModel, register_model

from .multi_head import VisEMultiHead
from .trunks import build_trunk, trunk_out_channels


@register_model("vise_model")
class VisEModel(ClassyModel):
    """``(B, 3, H, W)`` -> ``{task: logits (B, K_task)}``.

    ``trunk`` is exported as is (see ``vise_plugin.models.export``); ``head`` is a
    :class:`VisEMultiHead`. The model is not wrapped by classy-vision's head executor.
    """

    wrapper_cls = None

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VisEModel":
        return cls.build(config["trunk"], config["tasks"])

    @classmethod
    def build(cls, trunk_name: str, tasks: Mapping[str, int]) -> "VisEModel":
        trunk = build_trunk(trunk_name)
        return cls(trunk, VisEMultiHead(trunk_out_channels(trunk), tasks))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.head(self.trunk(x))
