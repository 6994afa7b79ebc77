"""Several objectives in one run, each on the model outputs it owns (VisE + web tags)."""

from typing import Any, Dict, Mapping, Sequence, Tuple

import torch
import torch.nn as nn
from classy_vision.losses import ClassyLoss, build_loss, register_loss

from vise_plugin.losses.packed_targets import packed_if_asked


@register_loss("merged_loss")
class MergedLoss(ClassyLoss):
    """The sum of losses, each given only its own output keys.

    Args:
        parts: ``(loss, output keys)`` pairs, e.g. ``(VisELoss(), ["comments", "reactions"])`` and
            ``(WebTagLoss(E), ["tags", "tag_embedding"])``. Every loss sees the whole target dict.

    ``last_values`` merges the parts' per-task values, for logging. From a config:
    ``{"name": "merged_loss", "parts": [{"loss": {"name": "vise_loss"}, "keys": ["comments", "reactions"]}, ...]}``.
    """

    def __init__(self, parts: Sequence[Tuple[nn.Module, Sequence[str]]]):
        super().__init__()
        self.losses = nn.ModuleList(loss for loss, _ in parts)
        self.keys = [list(keys) for _, keys in parts]
        self.outputs = tuple(k for keys in self.keys for k in keys)
        self.last_values: Dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "MergedLoss":
        """``parts``: ``[{"loss": {name, ...}, "keys": [...]}]``; ``targets`` (added by the runner) is
        passed on to every part."""
        targets = {"targets": config["targets"]} if "targets" in config else {}
        return packed_if_asked(
            cls([(build_loss({**part["loss"], **targets}), part["keys"]) for part in config["parts"]]), config
        )

    def forward(self, output: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total, values = None, {}
        for loss, keys in zip(self.losses, self.keys):
            value = loss({k: output[k] for k in keys}, target)
            values.update(getattr(loss, "last_values", {}))
            total = value if total is None else total + value
        self.last_values = values
        return total
