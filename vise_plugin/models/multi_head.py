"""The VisE multi-head: one linear classifier per engagement type on pooled trunk features."""

from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from classy_vision.heads import ClassyHead, register_head

from vise_plugin.registry import target_size


def pooled_features(x: torch.Tensor, in_features: int) -> torch.Tensor:
    """Trunk features ``(B, C, H, W)`` (globally average-pooled) or ``(B, C)`` -> ``(B, C)``; any
    other shape, or ``C != in_features``, is a ValueError."""
    if x.dim() == 4:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"expected features (B, {in_features}[, H, W]), got {tuple(x.shape)}")
    return x


@register_head("vise_multi_head")
class VisEMultiHead(ClassyHead):
    """Parallel linear heads, one per task, on globally average-pooled features.

    Args:
        in_features: ``C``, channels of the trunk output.
        tasks: ``{task name: number of classes}``, e.g. ``{"comments": 1000, "reactions": 16}``.
        unique_id: classy-vision head id.

    Forward takes ``(B, C, H, W)`` or ``(B, C)`` and returns ``{task: logits (B, K_task)}``.
    """

    def __init__(self, in_features: int, tasks: Mapping[str, int], unique_id: str = "vise_multi_head"):
        super().__init__(unique_id=unique_id, num_classes=None)
        if not tasks:
            raise ValueError("VisEMultiHead needs at least one task")
        self.in_features = in_features
        self.tasks = dict(tasks)
        self.fcs = nn.ModuleDict({name: nn.Linear(in_features, k) for name, k in self.tasks.items()})

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VisEMultiHead":
        """``in_features`` and ``tasks``: ``{name: K}``, or a list of names whose K comes from
        ``targets`` (``{name: {"num_classes": K}}``, what the runner adds from the data; default
        ``[comments, reactions]``)."""
        tasks = config.get("tasks") or ["comments", "reactions"]
        if not isinstance(tasks, Mapping):
            tasks = {name: target_size(config, name) for name in tasks}
        return cls(in_features=config["in_features"], tasks=tasks, unique_id=config.get("unique_id", "vise_multi_head"))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` or ``(B, C)`` -> ``(B, C)``."""
        return pooled_features(x, self.in_features)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(B, C, H, W)`` or ``(B, C)`` features -> ``{task: logits (B, K_task)}``."""
        features = self.pooled(x)
        return {name: fc(features) for name, fc in self.fcs.items()}
