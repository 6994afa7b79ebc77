"""Reading an image file through iopath; decoding is left to the transform, which knows the scale it needs."""

import contextlib
import io
from typing import Any, Callable, Iterator, Optional

import torch
from iopath.common.file_io import g_pathmgr
from PIL import Image

from vise_plugin.errors import InputError


@contextlib.contextmanager
def open_image(path: str, data: Optional[bytes] = None) -> Iterator[Image.Image]:
    """``path`` (any iopath location), or the file's bytes ``data`` (``path`` then only names it), as a
    lazily decoded PIL image, valid inside the ``with`` block.

    Decoding happens in the block (in the transform), so a JPEG can be drafted at reduced scale
    first. A file that cannot be read or decoded raises one :class:`InputError` naming it.
    """
    try:
        with io.BytesIO(data) if data is not None else g_pathmgr.open(path, "rb") as f:
            yield Image.open(f)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None


def load_image(
    path: str, transform: Callable[[Image.Image], torch.Tensor], data: Optional[bytes] = None
) -> torch.Tensor:
    """``transform`` applied to the lazily opened image at ``path`` (or of its bytes ``data``)."""
    with open_image(path, data) as image:
        return transform(image)


@contextlib.contextmanager
def cpu_seed(seed: int) -> Iterator[None]:
    """Inside the block torch's CPU generator is seeded with ``seed`` (taken modulo 2**63: a seed built
    from large run seeds and positions may pass torch's range); outside it the global random state is
    as it was. Only the CPU generator: ``torch.manual_seed`` also seeds every accelerator's, which
    costs about a millisecond per call where they are not initialised (a data-loader worker)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed % 2**63)
        yield


def load_seeded_image(
    path: str,
    transform: Callable[[Image.Image], torch.Tensor],
    seed: Optional[int] = None,
    data: Optional[bytes] = None,
) -> Any:
    """``load_image``, with the transform's random numbers drawn from ``seed`` when one is given
    (the global random state is left as it was)."""
    if seed is None:
        return load_image(path, transform, data)
    with cpu_seed(seed):
        return load_image(path, transform, data)


def load_or_skip(
    path: str,
    transform: Callable[[Image.Image], torch.Tensor],
    seed: Optional[int] = None,
    skip_unreadable: bool = False,
    data: Optional[bytes] = None,
) -> Any:
    """``load_seeded_image``; None instead of the :class:`InputError` when ``skip_unreadable``."""
    try:
        return load_seeded_image(path, transform, seed, data)
    except InputError:
        if not skip_unreadable:
            raise
        return None


def blank_input(transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """``transform`` of a black image, with its random numbers drawn from a fixed seed (the global
    random state is left as it was): an input of the shape the dataset's items have."""
    with cpu_seed(0):
        return transform(Image.new("RGB", (64, 64)))
