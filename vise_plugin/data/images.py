"""Reading an image file through iopath."""

from PIL import Image
from iopath.common.file_io import g_pathmgr

from ..errors import InputError


def load_rgb(path: str) -> Image.Image:
    """Opens ``path`` (any iopath location) as an RGB PIL image; :class:`InputError` names the file."""
    try:
        with g_pathmgr.open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None
    return image.convert("RGB")
