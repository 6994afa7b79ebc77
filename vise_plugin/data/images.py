"""Reading an image file through iopath; decoding is left to the transform, which knows the scale it needs."""

import contextlib
from typing import Callable, Iterator

import torch
from PIL import Image
from iopath.common.file_io import g_pathmgr

from ..errors import InputError


@contextlib.contextmanager
def open_image(path: str) -> Iterator[Image.Image]:
    """``path`` (any iopath location) as a lazily decoded PIL image, valid inside the ``with`` block.

    Decoding happens in the block (in the transform), so a JPEG can be drafted at reduced scale
    first. A file that cannot be read or decoded raises one :class:`InputError` naming it.
    """
    try:
        with g_pathmgr.open(path, "rb") as f:
            yield Image.open(f)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None


def load_image(path: str, transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """``transform`` applied to the lazily opened image at ``path``."""
    with open_image(path) as image:
        return transform(image)

