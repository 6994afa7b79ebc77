"""Image pipelines for pretraining and evaluation (ImageNet statistics, as torchvision models).

Both take a PIL image that may not be decoded yet (:func:`vise_plugin.data.images.open_image`): a
JPEG is then decoded at the smallest DCT scale (1, 1/2, 1/4, 1/8) that still holds the pixels the
output needs, which is most of the cost of reading a large photo. A decoded image passes through.
"""

from typing import Tuple

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _draft(image: Image.Image, size: Tuple[int, int]) -> Image.Image:
    """Decodes ``image`` as RGB, at reduced scale when it is a lazy JPEG at least twice ``size``."""
    image.draft("RGB", size)  # a no-op for decoded images and formats without draft scales
    return image.convert("RGB")


class DraftRandomResizedCrop(T.RandomResizedCrop):
    """``RandomResizedCrop`` that decodes a lazy JPEG at the smallest scale at which the sampled crop
    is still at least ``size``: the crop is drawn on the full image (same random draws as the
    torchvision transform), then read from the reduced decode."""

    def forward(self, image: Image.Image) -> Image.Image:
        top, left, height, width = self.get_params(image, self.scale, self.ratio)
        full_w, full_h = image.size
        reduce = 1
        while reduce < 8 and min(height, width) >= 2 * reduce * max(self.size):
            reduce *= 2
        image = _draft(image, (max(1, full_w // reduce), max(1, full_h // reduce)))
        sx, sy = image.size[0] / full_w, image.size[1] / full_h
        return F.resized_crop(
            image,
            round(top * sy),
            round(left * sx),
            max(1, round(height * sy)),
            max(1, round(width * sx)),
            self.size,
            self.interpolation,
            antialias=self.antialias,
        )


class DraftToShortSide(torch.nn.Module):
    """Decodes a lazy JPEG at the smallest scale whose width and height are still at least ``side``."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, image: Image.Image) -> Image.Image:
        return _draft(image, (self.side, self.side))


def train_transform(size: int, crop_scale_min: float = 0.08) -> T.Compose:
    """PIL image -> ``(3, size, size)`` float tensor with random-resized crop and flip."""
    return T.Compose(
        [
            DraftRandomResizedCrop(size, scale=(crop_scale_min, 1.0)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )


def eval_transform(size: int, resize_ratio: float = 256 / 224) -> T.Compose:
    """PIL image -> ``(3, size, size)``: resize the short side to ``size * resize_ratio``, centre crop."""
    resize = round(size * resize_ratio)
    return T.Compose(
        [DraftToShortSide(resize), T.Resize(resize), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
