"""A loss whose targets may arrive packed in one tensor (see :class:`vise_plugin.data.packed_targets.TargetLayout`)."""

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
from classy_vision.losses import ClassyLoss


class PackedTargets(ClassyLoss):
    """``loss`` with a ``(B, W)`` target tensor unpacked into ``{name: tensor}`` first; dict targets pass
    as they are. ``last_values`` are the wrapped loss's.

    Args:
        loss: the loss of dict targets.
        layout: what :meth:`unpack` needs (a :class:`TargetLayout`).
    """

    def __init__(self, loss: nn.Module, layout: Any):
        super().__init__()
        self.loss = loss
        self.layout = layout

    @property
    def last_values(self) -> Dict[str, torch.Tensor]:
        return getattr(self.loss, "last_values", {})

    def forward(self, output: Any, target: Any) -> torch.Tensor:
        if isinstance(target, torch.Tensor):
            target = self.layout.unpack(target)
        return self.loss(output, target)


def packed_if_asked(loss: nn.Module, config: Mapping[str, Any]) -> nn.Module:
    """``loss`` as it is, or wrapped in :class:`PackedTargets` when its config has ``packed_targets``
    (the parameters of the collator that packed them, e.g. ``{"label_store": <folder>}``)."""
    if not config.get("packed_targets"):
        return loss
    from vise_plugin.data.packed_targets import packed_layout

    return PackedTargets(loss, packed_layout(config["packed_targets"]))
