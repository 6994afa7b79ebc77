"""Streaming pretraining from tar shards (``config.data.dataset=streaming_shards``), read with WebDataset.

Each epoch lists the shards' samples in a seeded order of the shards (each shard's samples in the
order they were written) and cuts that list into equal, contiguous parts: one per rank, then one per
*lane* of the rank. Lane ``l`` makes the rank's global batches ``j`` with ``j % workers == l``; the
DataLoader takes batches from its workers in turn starting with worker 0, so after a resume at batch
``b`` worker ``w`` serves lane ``(w + b) % workers``, and the batches come back in the same order as
in a run that never stopped. A lane reads its part start to end (a shard it starts inside is entered
with one seek, through the shard's index, when the shards are local files), shuffles it through a
seeded buffer, and skips, without decoding them, the samples of its batches before ``b``; the lanes
are the workers, so a mid-epoch resume needs the number of workers it stopped with (the trainer checks).
Every rank therefore reads its own samples, the same number of them, and no sample twice in an epoch
(unless the shards hold fewer than ``world_size * batch_size``: the list is then gone round again);
the ``num_items % (world_size * batch_size)`` samples at the end of an epoch's list are left out of
that epoch. A shard that ends early or cannot be opened is logged once by name and its missing samples are
skipped and counted like unreadable images. The shards are local paths or WebDataset URLs (``pipe:``,
``http(s)://``) given by ``url_prefix``.
"""

import bisect
import json
import os
import random
import tarfile
from urllib.parse import urlparse
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import webdataset as wds
from classy_vision.dataset import ClassyDataset
from webdataset.gopen import gopen_schemes
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from vise_plugin.data.bad_images import SKIPPED, collate_readable
from vise_plugin.data.device_decode import named, training_pipeline
from vise_plugin.data.images import blank_input, load_or_skip
from vise_plugin.data.resumable_sampler import SEED_STRIDE
from vise_plugin.data.tar_shards import MANIFEST, ShardTargets, read_manifest, report_damaged_shard, sample_key
from vise_plugin.errors import ConfigError, InputError
from vise_plugin.registry import register_dataset


READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError)  # a shard cut short, gone, or not a tar


class Run(NamedTuple):
    """Samples ``start`` to ``stop`` (exclusive) of shard ``shard``, at epoch positions from ``position``."""

    shard: int
    start: int
    stop: int
    position: int


def epoch_runs(counts: Sequence[int], order: Sequence[int], first: int, length: int) -> List[Run]:
    """Epoch positions ``first`` to ``first + length`` of the list of the shards' samples (shard ``s``
    holds ``counts[s]``) in shard order ``order``, going round the list when it is shorter, as runs of
    consecutive samples of one shard."""
    ends = np.cumsum([counts[s] for s in order]).tolist()
    total = ends[-1] if ends else 0
    if total == 0 and length:
        raise InputError("the shard manifest lists no samples")
    runs, position = [], first
    while position < first + length:
        at = position % total
        k = bisect.bisect_right(ends, at)
        start = at - (ends[k] - counts[order[k]])
        take = min(counts[order[k]] - start, first + length - position)
        runs.append(Run(order[k], start, start + take, position))
        position += take
    return runs


def tar_samples(stream: BinaryIO, url: str) -> Iterator[Dict[str, Any]]:
    """The samples of a tar stream, ``{"__key__", "__url__", ext: bytes}`` (a sample's members are
    adjacent); a complete sample read before an error is still yielded, then the error raised."""
    sample: Dict[str, Any] = {}
    try:
        for member in tar_file_iterator(stream):
            key, ext = base_plus_ext(member["fname"])
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample = sample or {"__key__": key, "__url__": url}
            sample[ext] = member["data"]
    except READ_ERRORS:
        if "jpg" in sample and "json" in sample:
            yield sample
        raise
    if sample:
        yield sample


def check_url_prefix(url_prefix: Optional[str]) -> None:
    """A one-line error for a ``url_prefix`` whose scheme WebDataset cannot open."""
    scheme = urlparse(url_prefix or "").scheme
    if scheme and scheme not in gopen_schemes:
        raise ConfigError(f"url_prefix={url_prefix!r}: WebDataset opens no {scheme}: URLs; use a local folder, "
                          f"pipe:<command writing the shard named last to stdout>, or one of "
                          f"{', '.join(sorted(k for k in gopen_schemes if not k.startswith('_')))}")


class StreamingShards(torch.utils.data.IterableDataset):
    """Batches ``{"input": (B, 3, S, S), "target": {...}, "skipped": [...]}`` streamed from a shard folder.

    An epoch's batches depend on the number of data-loader workers (:attr:`resume_needs_same_workers`).

    Args:
        folder: the shard folder (its ``manifest.json`` lists the shards and their sizes).
        batch_size: images per batch on this rank.
        transform: PIL image -> tensor (the item's seed is drawn from its epoch position).
        rank, world_size: this process's place among the data-parallel ranks.
        seed: the run's seed.
        buffer: the shuffle buffer's size, in samples.
        url_prefix: where the shards are read from (default: the folder itself).
        collate: batch builder (default :func:`collate_readable`).
        comment_target: ``histogram`` or ``uniform``, as for :class:`EngagementLabels`.
    """

    resume_needs_same_workers = True  # the lanes are the data-loader's workers

    def __init__(self, folder: str, batch_size: int, transform: Callable, rank: int = 0, world_size: int = 1,
                 seed: int = 0, buffer: int = 1000, url_prefix: Optional[str] = None,
                 collate: Callable = collate_readable, comment_target: str = "histogram"):
        manifest = read_manifest(folder)
        check_url_prefix(url_prefix)
        self.names = [s["name"] for s in manifest["shards"]]
        self.urls = [f"{url_prefix or folder}/{name}.tar" for name in self.names]
        self.counts = [int(s["samples"]) for s in manifest["shards"]]
        self.seekable = url_prefix is None and "://" not in folder
        self.targets = ShardTargets(manifest, comment_target, os.path.join(folder, MANIFEST))
        self.folder, self.batch_size, self.transform = folder, batch_size, transform
        self.rank, self.world_size, self.seed, self.buffer = rank, world_size, seed, buffer
        self.collate = collate
        self.num_items = sum(self.counts)
        self.epoch = self.start_batch = 0
        self._reported: set = set()

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration yields batches ``start_batch, start_batch + 1, ...`` of ``epoch``."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches per epoch on each rank (the same on every rank)."""
        return max(self.num_items // (self.world_size * self.batch_size), 1)

    def lane_runs(self, lane: int, lanes: int) -> List[Run]:
        """The runs of samples lane ``lane`` of ``lanes`` reads this epoch (its batches ``j``, ``j % lanes == lane``)."""
        quotas = [len(range(k, len(self), lanes)) for k in range(lanes)]
        order = list(range(len(self.urls)))
        random.Random(self.seed * SEED_STRIDE + self.epoch).shuffle(order)
        first = (self.rank * len(self) + sum(quotas[:lane])) * self.batch_size
        return epoch_runs(self.counts, order, first, quotas[lane] * self.batch_size)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        lane = (worker + self.start_batch) % workers
        runs = self.lane_runs(lane, workers)
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{lane}")
        stream = wds.shuffle(self.buffer, initial=min(self.buffer, 100), rng=rng)(self._read(runs))
        skip = len(range(lane, min(self.start_batch, len(self)), workers))
        for count in range(len(range(lane, len(self), workers))):
            batch = [next(stream) for _ in range(self.batch_size)]
            if count < skip:
                continue  # a resume: these batches were trained on before the stop
            yield self.collate([self._item(sample, position) for sample, position in batch])

    def _read(self, runs: Sequence[Run]) -> Iterator[Tuple[Dict[str, Any], int]]:
        """``(raw sample, epoch position)`` of every sample of ``runs``, in order; a sample the shard
        does not deliver comes as ``{"__url__", "__key__"}`` alone (skipped and counted)."""
        for run in runs:
            got = 0
            try:
                for sample in self._shard_samples(run.shard, run.start):
                    if got == run.stop - run.start:
                        break
                    yield sample, run.position + got
                    got += 1
                else:
                    if got < run.stop - run.start:
                        self._report(run.shard, f"holds fewer samples than its manifest's {self.counts[run.shard]}")
            except READ_ERRORS as e:
                reason = str(e.args[0] if e.args else type(e).__name__).split(" @ ")[0]  # without the stream's repr
                self._report(run.shard, f"unreadable after sample {run.start + got} ({reason})")
            for k in range(run.start + got, run.stop):
                yield {"__url__": self.urls[run.shard], "__key__": f"sample {k}"}, run.position + k - run.start

    def _shard_samples(self, shard: int, start: int) -> Iterator[Dict[str, Any]]:
        """Shard ``shard``'s samples from its ``start``-th on: entered with one seek when the shard is
        a local file whose index points at that sample's first member, else read from the start."""
        url = self.urls[shard]
        stream = self._open_at(shard, start) if self.seekable and start else None
        skip = 0 if stream is not None else start
        if stream is None:
            try:
                stream = wds.gopen(url, "rb")
            except ValueError as e:  # webdataset's word for a URL it will not open: a setting, not a bad shard
                raise ConfigError(f"{url}: {e}") from None
        try:
            for k, sample in enumerate(tar_samples(stream, url)):
                if k >= skip:
                    yield sample
        finally:
            try:
                stream.close()
            except OSError:  # a pipe closed before its command finished
                pass

    def _open_at(self, shard: int, start: int) -> Optional[BinaryIO]:
        """The local shard file positioned at sample ``start``'s first member header; None when the
        index is missing or does not point at that member."""
        try:
            row, jpg_offset = (int(v) for v in np.load(os.path.join(self.folder, f"{self.names[shard]}.idx.npy"),
                                                     mmap_mode="r")[start, :2])
            f = open(self.urls[shard], "rb")
        except (OSError, ValueError, IndexError):
            return None
        try:
            f.seek(max(jpg_offset - tarfile.BLOCKSIZE, 0))
            name = tarfile.TarInfo.frombuf(f.read(tarfile.BLOCKSIZE), "utf-8", "surrogateescape").name
        except (OSError, tarfile.TarError):
            name = None
        if name != f"{sample_key(row)}.jpg":
            f.close()
            return None
        f.seek(jpg_offset - tarfile.BLOCKSIZE)
        return f

    def _report(self, shard: int, what: str) -> None:
        report_damaged_shard(self._reported, self.urls[shard], what)

    def _item(self, sample: Dict[str, Any], position: int) -> Dict[str, Any]:
        where = f"{sample.get('__url__', self.folder)}#{sample.get('__key__', '?')}"
        if "jpg" not in sample or "json" not in sample:
            return {SKIPPED: where}
        positions = self.world_size * len(self) * self.batch_size
        seed = (self.seed * SEED_STRIDE + self.epoch) * positions + position
        image = load_or_skip(where, self.transform, seed, skip_unreadable=True, data=sample["jpg"])
        if image is None:
            return {SKIPPED: where}
        try:
            target = self.targets.of(json.loads(sample["json"]), where)
        except (ValueError, InputError):
            return {SKIPPED: where}
        return {"input": named(image, where), "target": target}

    def placeholder_item(self) -> Dict[str, Any]:
        return {"input": blank_input(self.transform), "target": self.targets.empty()}

    def target_specs(self) -> Dict[str, Dict[str, Any]]:
        return self.targets.specs()

    def describe(self) -> str:
        return f"tar shards {self.folder} ({len(self.urls)} shards, streamed)"

    @property
    def image_root(self) -> str:
        return ""
@register_dataset("streaming_shards")
class StreamingShardsDataset(ClassyDataset):
    """classy-vision dataset of :class:`StreamingShards` (``config.data.dataset=streaming_shards``):
    ``folder`` (default ``config.data.shards``), ``buffer``, ``url_prefix``, and the image settings and
    seed every pretraining dataset gets; the rank and world size come from the environment
    (``torchrun`` / the submitit launcher)."""

    def __init__(self, folder: str, batchsize_per_replica: int = 64, image_size: int = 224,
                 crop_scale_min: float = 0.08, seed: int = 0, buffer: int = 1000, url_prefix: Optional[str] = None,
                 decode_on: str = "loader", comment_target: str = "histogram"):
        from vise_plugin.engine.distributed import rank_from_env, world_size_from_env

        transform, collate = training_pipeline(decode_on, image_size, crop_scale_min)
        stream = StreamingShards(folder, batchsize_per_replica, transform, rank_from_env(), world_size_from_env(), seed,
                                 buffer, url_prefix, collate, comment_target)
        super().__init__(stream, batchsize_per_replica, False, transform=None, num_samples=None)

    @classmethod
    def check_inputs(cls, config: Mapping[str, Any]) -> str:
        folder = config.get("folder") or (config.get("data") or {}).get("shards")
        if not folder:
            raise InputError("streaming_shards reads config.data.shards=<folder of manifest.json>; it is unset")
        read_manifest(folder)
        check_url_prefix(config.get("url_prefix"))
        return folder

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "StreamingShardsDataset":
        folder = cls.check_inputs(config)
        return cls(folder, config["batchsize_per_replica"], config.get("image_size", 224),
                   config.get("crop_scale_min", 0.08), config.get("seed", 0), config.get("buffer", 1000),
                   config.get("url_prefix"), config.get("decode_on", "loader"),
                   (config.get("data") or {}).get("comment_target") or "histogram")
