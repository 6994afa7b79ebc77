"""The training loader's batches with their images decoded on the training device (``config.data.decode_on=device``)."""

from typing import Any, Callable, Dict, Iterator, Mapping

import torch

from vise_plugin.data.bad_images import SKIPPED, placeholder_batch
from vise_plugin.data.device_decode import decode_batch


class DeviceDecodedLoader:
    """``loader``'s batches (encoded, from :func:`collate_encoded` under :func:`collate_readable`), each with
    its images decoded on ``device`` by ``decode`` (see :func:`decode_batch`): ``{"input": (B', 3, S, S)
    float32 on device, "target": {task: (B', ...)}, "skipped": [names]}``, where ``skipped`` names the
    images the loader could not read and then those that did not decode. A batch left with no image has
    neither ``input`` nor ``target``.

    A batch is decoded when it is taken from this loader, that is while the training step before it is
    still queued on the device: :class:`DeviceDecode` works on a side stream, so the two overlap, and the
    loader's workers go on reading (prefetching) the next encoded batches meanwhile.

    Args:
        loader: the DataLoader of encoded batches; its ``batch_sampler``, ``dataset`` and ``num_workers``
            are this loader's.
        decode: ``(batch["input"], device, channels_last) ->`` :class:`Decoded` or a ``(B, 3, S, S)``
            tensor, e.g. :class:`DeviceDecode`.
        device: the training device.
        channels_last: decode into channels-last memory format.
    """

    def __init__(self, loader: Any, decode: Callable, device: torch.device, channels_last: bool = False):
        self.loader = loader
        self.decode = decode
        self.device = torch.device(device)
        self.channels_last = channels_last

    @property
    def batch_sampler(self) -> Any:
        return self.loader.batch_sampler

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    @property
    def num_workers(self) -> int:
        return self.loader.num_workers

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for batch in self.loader:
            yield self.decoded(batch)

    def decoded(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        """``batch`` decoded, the names of its images that did not decode added to its ``skipped`` list."""
        batch, undecodable = decode_batch(batch, self.decode, self.device, self.channels_last)
        batch[SKIPPED] = list(batch.get(SKIPPED, [])) + undecodable
        return batch

    def placeholder_batch(self) -> Dict[str, Any]:
        """:func:`placeholder_batch` of the wrapped loader, decoded like its batches."""
        return self.decoded(placeholder_batch(self.loader))
