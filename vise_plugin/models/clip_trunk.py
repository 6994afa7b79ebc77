"""CLIP's ResNet-50 image tower as a trunk (``config.model.trunk=clip_rn50``), for comparing VisE with
CLIP (Fig. 3). The model definition is open_clip's (``pip install -e ".[clip]"``); the weights come from
the user's file (``config.model.weights``, the ``clip_rn50`` weights format). Nothing is downloaded.

The trunk is ``nn.Sequential(stem, layer1, layer2, layer3, nn.Sequential(layer4, attention pooling))``:
``res5`` (the whole trunk) gives CLIP's attention-pooled embedding as ``(B, 1024, 1, 1)``, so the linear
protocol evaluates its pooled features; ``res4`` and below are the ResNet stages. Inputs are 224 x 224
(the pooling's positional embedding is sized for it).
"""

from collections import OrderedDict
from typing import Dict

import torch
import torch.nn as nn

from vise_plugin.errors import ConfigError
from vise_plugin.registry import TRUNKS

STEM = ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3", "avgpool")
STAGES = {"layer1": "1", "layer2": "2", "layer3": "3", "layer4": "4.0", "attnpool": "4.1.pool"}


class PooledMap(nn.Module):
    """CLIP's attention pooling, ``(B, C, H, W)`` -> ``(B, D, 1, 1)``."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)[:, :, None, None]


@TRUNKS.register("clip_rn50")
def clip_rn50() -> nn.Sequential:
    try:
        from open_clip.modified_resnet import ModifiedResNet
    except ImportError:
        raise ConfigError(
            "config.model.trunk=clip_rn50 needs the open-clip-torch package: pip install -e '.[clip]'"
        ) from None
    net = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=64)
    stem = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in STEM))
    trunk = nn.Sequential(stem, net.layer1, net.layer2, net.layer3, nn.Sequential(net.layer4, PooledMap(net.attnpool)))
    trunk.out_channels, trunk.input_size = 1024, 224
    return trunk


def from_clip_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CLIP's image-tower keys (``conv1.weight``, ``layer4.0...``, ``attnpool.q_proj.weight``) -> the trunk's."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        out[f"0.{key}" if head in STEM else f"{STAGES.get(head, head)}.{rest}"] = value
    return out


def to_clip_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse of :func:`from_clip_keys`."""
    back = {v: k for k, v in STAGES.items()}
    out = {}
    for key, value in state.items():
        if key.startswith("0."):
            out[key[2:]] = value
            continue
        prefix = next(p for p in sorted(back, key=len, reverse=True) if key.startswith(p + "."))
        out[f"{back[prefix]}.{key[len(prefix) + 1 :]}"] = value
    return out
