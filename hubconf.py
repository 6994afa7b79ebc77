"""torch.hub entry points with the official VisE signatures.

    model = torch.hub.load("<this repo or a local checkout>", "resnet50_250m", pretrained=True,
                           weights="/path/to/vise_r50_250m.pth", source="local")

Each returns ``nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])``, which maps
``(B, 3, 224, 224)`` to ``(B, 2048, 7, 7)``. ``weights`` is a local path or a URL (default: the
official release URL); files are read with ``torch.load(weights_only=True)``, a local ``.safetensors``
file with the ``safetensors`` package.
"""

import os

import torch
import torchvision

dependencies = ["torch", "torchvision"]

model_urls = {
    "resnet50_1m": "https://cornell.box.com/shared/static/iewb4hlabndnxtkvkiojzxyk54y5uzxd.pth",
    "resnet50_250m": "https://cornell.box.com/shared/static/b902w3tgd042stfocdxsf6nqv8egmbwn.pth",
}


def _load_state(weights: str, progress: bool) -> dict:
    if "://" in weights and not weights.startswith("file://"):
        return torch.hub.load_state_dict_from_url(weights, progress=progress, map_location="cpu", weights_only=True)
    path = weights[len("file://") :] if weights.startswith("file://") else os.path.expanduser(weights)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _resnet50(model_arch: str, pretrained: bool = False, progress: bool = True, weights: str = None, **kwargs):
    model = torchvision.models.resnet50(weights=None, **kwargs)
    model = torch.nn.Sequential(*list(model.children())[:-2])
    if pretrained:
        model.load_state_dict(_load_state(weights or model_urls[model_arch], progress), strict=True)
    return model


def resnet50_1m(pretrained: bool = False, progress: bool = True, weights: str = None, **kwargs):
    """ResNet-50 pretrained on 1.23M posts with VisE: ``(B, 3, 224, 224)`` -> ``(B, 2048, 7, 7)``.

    Args:
        pretrained: load weights (else random initialisation).
        progress: show a progress bar while downloading.
        weights: local path or URL of a hub-format state dict (``tools/export_hub.py`` writes one);
            default the official release.
    """
    return _resnet50("resnet50_1m", pretrained, progress, weights, **kwargs)


def resnet50_250m(pretrained: bool = False, progress: bool = True, weights: str = None, **kwargs):
    """ResNet-50 pretrained on 250M posts with VisE: ``(B, 3, 224, 224)`` -> ``(B, 2048, 7, 7)``.

    Args: as :func:`resnet50_1m`.
    """
    return _resnet50("resnet50_250m", pretrained, progress, weights, **kwargs)
