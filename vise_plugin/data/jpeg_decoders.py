"""The JPEG decoders :class:`DeviceDecode` can use (``config.data.jpeg_decoder``).

``torchvision``: ``torchvision.io.decode_jpeg`` (nvJPEG on a GPU), deprecated since torchvision 0.29.
``torchcodec``: TorchCodec's ``decode_jpeg`` (PyPI ``torchcodec``, the extra ``.[torchcodec]``), its
successor, with the same batched nvJPEG decode on a GPU. ``auto``: torchvision's while it has one,
else TorchCodec's. Each maps ``(n,)`` uint8 CPU tensors of file bytes (one, or a list: one batched call)
to ``(3, H, W)`` uint8 RGB images on ``device``, and raises ``RuntimeError`` on a file it cannot decode.
"""

import importlib.util
import warnings
from typing import Callable, List, Union

import torch
import torchvision.io

from vise_plugin.errors import ConfigError

Encoded = Union[torch.Tensor, List[torch.Tensor]]
JPEG_DECODERS = ("auto", "torchvision", "torchcodec")


def _torchvision(encoded: Encoded, device: torch.device) -> Encoded:
    with warnings.catch_warnings():  # its deprecation notice, once per batch otherwise
        warnings.simplefilter("ignore", DeprecationWarning)
        return torchvision.io.decode_jpeg(encoded, mode=torchvision.io.ImageReadMode.RGB, device=device)


def _torchcodec(encoded: Encoded, device: torch.device) -> Encoded:
    from torchcodec.decoders import decode_jpeg

    try:
        return decode_jpeg(encoded, mode="RGB", device=device)
    except ValueError as e:  # TorchCodec's word for some undecodable files
        raise RuntimeError(str(e)) from None


def chosen_decoder(name: str = "auto") -> str:
    """``torchvision`` or ``torchcodec``: the decoder ``name`` (one of :data:`JPEG_DECODERS`) stands for;
    a one-line error when it is unknown or not installed."""
    if name not in JPEG_DECODERS:
        raise ConfigError(f"config.data.jpeg_decoder={name!r}: use one of {', '.join(JPEG_DECODERS)}")
    has_torchvision = hasattr(torchvision.io, "decode_jpeg")
    if name == "auto":
        name = "torchvision" if has_torchvision else "torchcodec"
    if name == "torchcodec" and importlib.util.find_spec("torchcodec") is None:
        raise ConfigError(
            "config.data.jpeg_decoder=torchcodec needs TorchCodec: pip install torchcodec (or the extra .[torchcodec])"
        )
    if name == "torchvision" and not has_torchvision:
        raise ConfigError(
            f"config.data.jpeg_decoder=torchvision: torchvision {torchvision.__version__} has no "
            "decode_jpeg; use torchcodec"
        )
    return name


def jpeg_decoder(name: str = "auto") -> Callable[[Encoded, torch.device], Encoded]:
    """The decoder ``name`` (one of :data:`JPEG_DECODERS`); a one-line error when it is unknown or
    not installed."""
    return _torchvision if chosen_decoder(name) == "torchvision" else _torchcodec
