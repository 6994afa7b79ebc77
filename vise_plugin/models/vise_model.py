"""Trunk + heads, the network trained by pretraining."""

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn
from classy_vision.models import ClassyModel, register_model

from vise_plugin.errors import ConfigError
from vise_plugin.models.merged_heads import MergedHeads
from vise_plugin.models.trunks import build_trunk, trunk_out_channels
from vise_plugin.registry import build_classy, spec


@register_model("vise_model")
class VisEModel(ClassyModel):
    """``(B, 3, H, W)`` -> ``{task: logits (B, K_task)}``, float32 even under autocast.

    ``trunk`` is exported as is (see :func:`vise_plugin.models.weights.export_hub_weights`); ``head`` is one
    registered head (e.g. :class:`VisEMultiHead`) or several merged (:class:`MergedHeads`). The model is
    not wrapped by classy-vision's head executor.
    """

    wrapper_cls = None

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VisEModel":
        """``{"trunk": name, "head_configs": [head configs], "targets": {...}}`` (classy-vision's
        ``build_model`` keeps ``heads`` for its own fork-block heads); ``"tasks": {name: K}`` instead of
        ``head_configs`` is one :class:`VisEMultiHead`."""
        heads = config.get("head_configs") or [{"name": "vise_multi_head", "tasks": dict(config["tasks"])}]
        return cls.build(config["trunk"], heads, config.get("targets"))

    @classmethod
    def build(
        cls,
        trunk_name: str,
        heads: Sequence[Any],
        targets: Optional[Mapping[str, Any]] = None,
        key: str = "config.model",
    ) -> "VisEModel":
        """The trunk registered as ``trunk_name`` and the heads, each a classy head config (``name`` or
        ``{name, <parameters>}``) built through classy-vision's head registry with ``in_features``
        (the trunk's channels) and ``targets`` (``{name: {"num_classes": K, ...}}`` of the data) added.
        Several heads are merged into one dict of outputs."""
        if not heads:
            raise ConfigError(f"{key}.heads is empty: name at least one head, e.g. [vise_multi_head]")
        trunk = build_trunk(trunk_name, f"{key}.trunk")
        extra = {"in_features": trunk_out_channels(trunk), "targets": dict(targets or {})}
        built = [
            build_classy("head", {**spec(h, f"{key}.heads[{i}]"), **extra}, f"{key}.heads[{i}]")
            for i, h in enumerate(heads)
        ]
        return cls(trunk, built[0] if len(built) == 1 else MergedHeads(*built))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.trunk(x)
        # Heads run in fp32 under autocast: fp16 logits overflow to inf past 65504.
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float())
