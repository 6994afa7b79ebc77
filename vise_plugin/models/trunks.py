"""Image trunks: the network up to (not including) global pooling.

Every trunk maps ``(B, 3, H, W)`` to spatial features ``(B, C, H', W')``. The torchvision
trunks are ``nn.Sequential(*list(resnet.children())[:-2])``, so their state dict has exactly the
keys of the official VisE ``torch.hub`` models (``0.weight``, ``1.running_mean``,
``4.0.conv1.weight``, ...) and ResNet-50 maps ``(B, 3, 224, 224)`` to ``(B, 2048, 7, 7)``.
"""

import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

from vise_plugin.registry import TRUNKS


def _without_pool_and_fc(resnet: nn.Module) -> nn.Sequential:
    return nn.Sequential(*list(resnet.children())[:-2])


@TRUNKS.register("resnet50")
def resnet50() -> nn.Sequential:
    return _without_pool_and_fc(torchvision.models.resnet50())


@TRUNKS.register("resnet101")
def resnet101() -> nn.Sequential:
    return _without_pool_and_fc(torchvision.models.resnet101())


@TRUNKS.register("resnext101_32x16d")
def resnext101_32x16d() -> nn.Sequential:
    return _without_pool_and_fc(ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=16))


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


@TRUNKS.register("tiny")
def tiny() -> nn.Sequential:
    """A four-stage CNN for tests and the CPU demo: ``(B, 3, 32, 32)`` -> ``(B, 256, 4, 4)``."""
    widths = (32, 64, 128, 256)
    stages, c_in = [], 3
    for i, width in enumerate(widths):
        stages.append(nn.Sequential(_conv_bn_relu(c_in, width, 1 if i == 0 else 2), _conv_bn_relu(width, width, 1)))
        c_in = width
    return nn.Sequential(*stages)


def build_trunk(name: str, key: str = "config.model.trunk") -> nn.Module:
    """A randomly initialised trunk registered in :data:`vise_plugin.registry.TRUNKS` under ``name``."""
    return TRUNKS.get(name, key)()


def trunk_out_channels(trunk: nn.Module) -> int:
    """Channels of the trunk's output, i.e. ``C`` of its ``(B, C, H', W')``: its ``out_channels`` when it
    says, else the last BatchNorm's (or convolution's) channels."""
    if hasattr(trunk, "out_channels"):
        return int(trunk.out_channels)
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    last_bn = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
    return last_bn[-1].num_features if last_bn else convs[-1].out_channels
