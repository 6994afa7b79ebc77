"""JPEG decoding and augmentation on the training device, in batches (``config.data.decode_on=device``).

The data-loader workers only read the file and draw the augmentation: :class:`EncodedCrop` takes the
lazily opened image (its header gives the size) and draws RandomResizedCrop's box and the flip with the
same random calls, in the same order, as the CPU path (:func:`train_transform`), so under the same item
seed both paths crop the same region. The batch then goes to the device as the encoded bytes and the
boxes; :class:`DeviceDecode` decodes them there (nvJPEG through ``torchvision.io.decode_jpeg`` on a
GPU), crops, resizes (bilinear, antialiased), flips and normalises. The two paths differ only by the
interpolation (and the CPU path's reduced-scale JPEG decode).
"""

from typing import Any, Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from vise_plugin.data.transforms import MEAN, STD


class EncodedCrop:
    """PIL image (lazily opened, not decoded) -> ``{"encoded": (n,) uint8 file bytes, or (3, H, W) uint8
    pixels for a format other than JPEG; "box": (5,) int64 top, left, height, width, flip}``.

    Args:
        size: the output side (only the draws depend on it: the crop's aspect ratio range).
        crop_scale_min: RandomResizedCrop's lower scale bound.
    """

    def __init__(self, size: int, crop_scale_min: float = 0.08):
        self.crop = T.RandomResizedCrop(size, scale=(crop_scale_min, 1.0))

    def __call__(self, image: Image.Image) -> Dict[str, torch.Tensor]:
        top, left, height, width = self.crop.get_params(image, self.crop.scale, self.crop.ratio)
        flip = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip's draw, after the crop's
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            image.fp.seek(0)
            encoded = torch.frombuffer(bytearray(image.fp.read()), dtype=torch.uint8)
        else:
            encoded = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
        return {"encoded": encoded, "box": torch.tensor([top, left, height, width, int(flip)], dtype=torch.int64)}


def collate_encoded(items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Items ``{"input": {"encoded", "box"}, "target": ...}`` -> ``{"input": {"encoded": [B tensors],
    "box": (B, 5)}, "target": collated}`` (encoded images differ in length, so they stay a list)."""
    return {"input": {"encoded": [item["input"]["encoded"] for item in items],
                      "box": torch.stack([item["input"]["box"] for item in items])},
            "target": default_collate([item["target"] for item in items])}


class DeviceDecode:
    """``{"encoded": [B], "box": (B, 5)}`` -> ``(B, 3, size, size)`` float images on ``device``, normalised
    as :func:`train_transform`'s.

    Args:
        size: the output side.
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, inputs: Dict[str, Any], device: torch.device, channels_last: bool = False) -> torch.Tensor:
        encoded: List[torch.Tensor] = inputs["encoded"]
        jpegs = [i for i, e in enumerate(encoded) if e.dim() == 1]
        images: List[Any] = list(encoded)
        if jpegs:
            decoded = decode_jpeg([encoded[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpegs, decoded):
                images[i] = image
        boxes = inputs["box"].tolist()  # the boxes are drawn on the CPU: no device read here
        out = torch.empty(len(images), 3, self.size, self.size, device=device)
        for i, (image, (top, left, height, width, _)) in enumerate(zip(images, boxes)):
            crop = image.to(device, non_blocking=True)[None, :, top:top + height, left:left + width].float()
            out[i] = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False)[0]
        flip = inputs["box"][:, 4].to(device, non_blocking=True).bool().view(-1, 1, 1, 1)
        out = torch.where(flip, out.flip(-1), out)
        mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
        out = (out - mean) / std
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out
