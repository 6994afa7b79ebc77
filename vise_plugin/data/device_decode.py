"""JPEG decoding and augmentation on the training device, in batches (``config.data.decode_on=device``).

The data-loader workers only read the file and draw the augmentation: :class:`EncodedCrop` takes the
lazily opened image (its header gives the size) and draws RandomResizedCrop's box and the flip with the
same random calls, in the same order, as the CPU path (:func:`train_transform`), so under the same item
seed both paths crop the same region. The batch then goes to the device as the encoded bytes and the
boxes; :class:`DeviceDecode` decodes them there (nvJPEG on a GPU, through torchvision's or TorchCodec's
``decode_jpeg``), crops, resizes (bilinear, antialiased), flips and normalises. The two paths differ only by the
interpolation (and the CPU path's reduced-scale JPEG decode).

A JPEG whose header reads but whose data does not decode gets past the workers; :class:`DeviceDecode`
then decodes the batch's images one by one (on the device, then on the CPU), and leaves out those
that decode nowhere, naming them; :class:`DeviceDecodedLoader`, which hands the trainer its batches
decoded, adds them to the batch's skipped images, counted like those the loader could not read. A
decoder that does not work on the device is not taken for bad data: it fails a small JPEG decoded
there before the device's first batch, or decodes none of a batch's JPEGs that the CPU decodes, and
either stops the run in one line.
"""

import io
import logging
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import default_collate

from vise_plugin.data.bad_images import collate_readable
from vise_plugin.data.jpeg_decoders import chosen_decoder, jpeg_decoder
from vise_plugin.data.transforms import MEAN, STD, train_transform
from vise_plugin.errors import ConfigError, error_summary

logger = logging.getLogger(__name__)


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


def with_file_name(image: Any, where: str) -> Any:
    """An :class:`EncodedCrop` output with the name of its file (``where``), for the error of an image
    that turns out not to decode on the device; any other image passes through."""
    return {**image, "where": where} if isinstance(image, dict) and "encoded" in image else image


def collate_encoded(items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Items ``{"input": {"encoded", "box"[, "where"]}, "target": ...}`` -> ``{"input": {"encoded": [B
    tensors], "box": (B, 5), "where": [B names or None]}, "target": collated}`` (encoded images differ
    in length, so they stay a list)."""
    return {
        "input": {
            "encoded": [item["input"]["encoded"] for item in items],
            "box": torch.stack([item["input"]["box"] for item in items]),
            "where": [item["input"].get("where") for item in items],
        },
        "target": default_collate([item["target"] for item in items]),
    }


class Decoded(NamedTuple):
    """:class:`DeviceDecode`'s output: ``images`` ``(B', 3, S, S)`` on the device, one per item that
    decoded (in batch order); ``unreadable``: the batch positions of the others, and their names."""

    images: torch.Tensor
    unreadable: List[int]
    names: List[str]


PROBE_SIZE, PROBE_COLOUR = 16, (200, 100, 50)


def _probe_jpeg() -> torch.Tensor:
    """A ``PROBE_SIZE`` square JPEG of ``PROBE_COLOUR``: ``(n,)`` uint8 file bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (PROBE_SIZE, PROBE_SIZE), PROBE_COLOUR).save(buffer, format="JPEG", quality=95)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _decode_one(
    decode_jpeg: Callable, encoded: torch.Tensor, device: torch.device
) -> Tuple[Optional[torch.Tensor], bool]:
    """One JPEG ``(n,)`` uint8 -> ``(3, H, W)`` uint8 on ``device``, decoded there or else on the CPU
    (nvJPEG does not take every file libjpeg does), and whether it decoded on ``device``; None when it
    decodes nowhere."""
    for where in dict.fromkeys([device, torch.device("cpu")]):
        try:
            image = decode_jpeg(encoded, where)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:
            continue
        return image.to(device, non_blocking=True), where == device
    return None, False


class DeviceDecode:
    """``{"encoded": [B], "box": (B, 5)[, "where": [B]]}`` -> :class:`Decoded`: ``(B', 3, size, size)``
    float images on ``device``, normalised as :func:`train_transform`'s, and the items that did not
    decode.

    On a GPU the work runs on a side stream of its own (high priority), so it overlaps the training
    step still queued on the caller's stream, which then waits for the images. The side stream also
    keeps the decoder's output memory apart from the caller's: torchvision's nvJPEG decoder writes
    without waiting for the stream it allocated from (pytorch/vision#9606; on H100 the hardware engine
    also ignores stream order, meta-pytorch/torchcodec#1634), so given a block the training step has
    freed but not yet finished reading, it would overwrite that step's tensors. The side stream is
    drained on the host before every decode. With an allocator backend other than the native one
    (``PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync``, whose pools may hand one stream memory another
    stream is still using) the caller's stream is drained too, at the cost of the overlap.

    The device is known at the first call (the loader's first batch), so the decoder is probed then, once per
    device, on a small JPEG of a known colour: a decoder that fails there, or decodes it wrong, stops
    the run with a :class:`ConfigError` instead of sending every image to the CPU.

    Args:
        size: the output side.
        decoder: the JPEG decoder (``config.data.jpeg_decoder``, see :func:`jpeg_decoder`).
    """

    def __init__(self, size: int, decoder: str = "auto"):
        self.size = size
        chosen = chosen_decoder(decoder)
        self.decode_jpeg = jpeg_decoder(chosen)
        self.decoder = decoder if chosen == decoder else f"{decoder} ({chosen})"
        self._streams: Dict[torch.device, torch.cuda.Stream] = {}
        self._normalise: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._probed: Set[torch.device] = set()
        self._fallback_logged = False

    def _unusable(self, device: torch.device, what: str) -> ConfigError:
        return ConfigError(
            f"config.data.decode_on=device, config.data.jpeg_decoder={self.decoder}: the decoder "
            f"{what}; use config.data.decode_on=loader (decoding in the data-loader workers) or "
            "another config.data.jpeg_decoder"
        )

    def probe(self, device: torch.device) -> None:
        """Decodes :func:`_probe_jpeg` on ``device`` (once per device); a :class:`ConfigError` when the
        decoder fails there or returns other pixels. Running out of memory is raised as it is."""
        if device in self._probed:
            return
        test = f"a {PROBE_SIZE} x {PROBE_SIZE} test JPEG on {device}"
        try:
            image = self.decode_jpeg([_probe_jpeg()], device)[0]
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # whatever a decoder that cannot start raises, not only RuntimeError
            raise self._unusable(device, f"does not decode {test} ({error_summary(e)})") from None
        shape, dtype = tuple(image.shape), str(image.dtype).replace("torch.", "")
        mean = tuple(round(float(c)) for c in image.float().mean((1, 2)).cpu()) if image.dim() == 3 else ()
        if (
            shape != (3, PROBE_SIZE, PROBE_SIZE)
            or image.dtype != torch.uint8
            or image.device.type != device.type
            or max(abs(m - c) for m, c in zip(mean, PROBE_COLOUR)) > 8
        ):
            raise self._unusable(
                device, f"decoded {test} to {shape} {dtype} of mean {mean} on {image.device}, not {PROBE_COLOUR}"
            )
        self._probed.add(device)

    def _side_stream(self, device: torch.device) -> Optional["torch.cuda.Stream"]:
        if device.type != "cuda":
            return None
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device, priority=-1)
        return self._streams[device]

    def decode(self, encoded: List[torch.Tensor], device: torch.device) -> List[Optional[torch.Tensor]]:
        """``B`` encoded images -> ``B`` ``(3, H, W)`` uint8 images (on ``device`` when decoded there),
        None where the file does not decode. One batched call, unless an image in it fails."""
        images: List[Optional[torch.Tensor]] = list(encoded)
        jpegs = [i for i, e in enumerate(encoded) if e.dim() == 1]
        if not jpegs:
            return images
        try:
            decoded = self.decode_jpeg([encoded[i] for i in jpegs], device)
        except torch.OutOfMemoryError:
            raise  # not the images' fault: decoding them one by one would hide it and crawl
        except RuntimeError as error:
            decoded, on_device = zip(*(_decode_one(self.decode_jpeg, encoded[i], device) for i in jpegs))
            on_cpu = sum(image is not None and not there for image, there in zip(decoded, on_device))
            if on_cpu and not any(on_device):  # the decoder failing, or JPEGs it does not take: probing again tells
                self._probed.discard(device)
                try:
                    self.probe(device)
                except ConfigError as e:
                    raise self._unusable(
                        device,
                        f"decoded none of a batch's {len(jpegs)} JPEGs on {device}, of "
                        f"which the CPU decoded {on_cpu} ({error_summary(error)}), and "
                        f"no longer decodes its test JPEG",
                    ) from e
            if on_cpu and not self._fallback_logged:
                logger.warning(
                    "a JPEG that %s could not decode was decoded on the CPU (later ones are not logged)", device
                )
                self._fallback_logged = True
        for i, image in zip(jpegs, decoded):
            images[i] = image
        return images

    def __call__(self, inputs: Dict[str, Any], device: torch.device, channels_last: bool = False) -> Decoded:
        device = torch.device(device)
        side = self._side_stream(device)
        if side is None:
            return self._decode_and_crop(inputs, device, channels_last)
        caller = torch.cuda.current_stream(side.device)
        side.synchronize()  # nothing queued may still read a block the decoder is handed
        if torch.cuda.get_allocator_backend() != "native":
            caller.synchronize()
        with torch.cuda.stream(side):
            decoded = self._decode_and_crop(inputs, device, channels_last)
        caller.wait_stream(side)
        decoded.images.record_stream(caller)  # not reused by the side stream while the step reads it
        return decoded

    def _decode_and_crop(self, inputs: Dict[str, Any], device: torch.device, channels_last: bool) -> Decoded:
        self.probe(device)
        images = self.decode(inputs["encoded"], device)
        keep = [i for i, image in enumerate(images) if image is not None]
        unreadable = [i for i, image in enumerate(images) if image is None]
        names = inputs.get("where") or [None] * len(images)
        boxes = inputs["box"].tolist()  # the boxes are drawn on the CPU: no device read here
        out = torch.empty(len(keep), 3, self.size, self.size, device=device)
        for j, i in enumerate(keep):
            top, left, height, width, _ = boxes[i]
            crop = images[i].to(device, non_blocking=True)[None, :, top : top + height, left : left + width].float()
            out[j] = F.interpolate(
                crop, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )[0]
        flip = inputs["box"][keep, 4].to(device, non_blocking=True).bool().view(-1, 1, 1, 1)
        out = torch.where(flip, out.flip(-1), out)
        if device not in self._normalise:  # copied to the device once, not every batch
            self._normalise[device] = (
                torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255,
                torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255,
            )
        mean, std = self._normalise[device]
        out = (out - mean) / std
        out = out.contiguous(memory_format=torch.channels_last) if channels_last else out
        return Decoded(out, unreadable, [names[i] or f"batch item {i}" for i in unreadable])


def _select(targets: Any, keep: torch.Tensor) -> Any:
    """The rows ``keep`` of every tensor of a (nested) target dict."""
    if isinstance(targets, Mapping):
        return {k: _select(v, keep) for k, v in targets.items()}
    return targets[keep]


def decode_batch(
    batch: Mapping[str, Any], decode: Callable, device: torch.device, channels_last: bool = False
) -> Tuple[Dict[str, Any], List[str]]:
    """``batch`` (``{"input": encoded, "target": ...}``, from :func:`collate_encoded`) with ``input`` the
    ``(B', 3, S, S)`` images ``decode`` (a :class:`DeviceDecode`, or any callable returning
    :class:`Decoded` or a tensor) makes on ``device``, and the names of the images that did not decode:
    they are left out with their targets (a batch left with none has no ``input`` nor ``target``)."""
    batch = dict(batch)
    if "input" not in batch:
        return batch, []
    decoded = decode(batch["input"], device, channels_last)
    if isinstance(decoded, torch.Tensor):
        decoded = Decoded(decoded, [], [])
    if not decoded.unreadable:
        batch["input"] = decoded.images
        return batch, []
    if len(decoded.images) == 0:
        return {k: v for k, v in batch.items() if k not in ("input", "target")}, list(decoded.names)
    unreadable = set(decoded.unreadable)
    keep = torch.tensor([i for i in range(len(decoded.images) + len(unreadable)) if i not in unreadable])
    batch["input"], batch["target"] = decoded.images, _select(batch["target"], keep)
    return batch, list(decoded.names)


def decodes_on_device(decode_on: str) -> bool:
    """Whether ``config.data.decode_on`` is ``device`` (else ``loader``); a one-line error for any other value."""
    if decode_on not in ("loader", "device"):
        raise ConfigError(f"config.data.decode_on={decode_on!r}: use loader or device")
    return decode_on == "device"


def training_pipeline(decode_on: str, image_size: int, crop_scale_min: float = 0.08) -> Tuple[Callable, Callable]:
    """``(transform, collate)`` of the pretraining items for ``config.data.decode_on``: decoded and
    augmented in the workers (:func:`train_transform`, :func:`collate_readable`), or read and drawn
    there and decoded on the device (:class:`EncodedCrop`, :func:`collate_encoded`)."""
    if decodes_on_device(decode_on):
        return EncodedCrop(image_size, crop_scale_min), partial(collate_readable, collate=collate_encoded)
    return train_transform(image_size, crop_scale_min), collate_readable
