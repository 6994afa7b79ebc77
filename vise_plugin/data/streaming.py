"""Streaming pretraining from tar shards (``config.data.dataset=streaming_shards``), read with WebDataset.

Each epoch lists the shards' samples in a seeded order of the shards (each shard's samples in the
order they were written) and cuts that list into equal, contiguous parts: one per rank, then one per
data-loader worker's share of the rank's batches. With ``W`` workers, share ``k`` is the rank's batches
``j`` with ``j % W == k``; the DataLoader takes batches from its workers in turn starting with worker 0,
so after a resume at batch ``b`` worker ``w`` makes share ``(w + b) % W``, and the batches come back in
the same order as in a run that never stopped. A worker reads its share's part start to end (a shard it
starts inside is entered with one seek, through the shard's index, when the shards are local files),
shuffles it through a seeded buffer, and skips, without decoding them, the samples of its batches before
``b``; the shares are the workers', so a mid-epoch resume needs the number of workers it stopped with
(the trainer checks).
Every rank therefore reads its own samples, the same number of them, and no sample twice in an epoch
(unless the shards hold fewer than ``world_size * batch_size``: the list is then gone round again);
the ``num_items % (world_size * batch_size)`` samples at the end of an epoch's list are left out of
that epoch. With ``subset``, the lists hold only the samples the indexed reader's ``config.data.subset``
draws (each shard's in its order); a worker reads past the others in its shards. A worker reads no
sample past its share's last one. A read stopped by an ``OSError`` (a dropped connection, a failed ``pipe:`` command)
is made again, ``read_attempts`` times with a doubling wait, from the sample it stopped at; a shard that
then still ends early or cannot be opened is logged once by name with the error's text, and its missing
samples are skipped and counted like unreadable images. The shards are local paths or WebDataset URLs
(``file://``, ``pipe:``, ``http(s)://``) given by ``url_prefix``, or a remote folder of a scheme
WebDataset opens (checked before any data-loader worker starts).
"""

import bisect
import json
import logging
import os
import random
import tarfile
import time
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import torch
import webdataset as wds
from classy_vision.dataset import ClassyDataset
from webdataset.gopen import gopen_schemes
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from vise_plugin.data.bad_images import SKIPPED, collate_readable
from vise_plugin.data.device_decode import training_pipeline, with_file_name
from vise_plugin.data.images import blank_input, load_or_skip
from vise_plugin.data.pretraining_images import subset_indices
from vise_plugin.data.resumable_sampler import SEED_STRIDE
from vise_plugin.data.tar_shards import MANIFEST, ShardTargets, read_manifest, report_damaged_shard, sample_key
from vise_plugin.errors import ConfigError, InputError, error_text
from vise_plugin.ranks import rank_from_env, world_size_from_env
from vise_plugin.registry import register_dataset

logger = logging.getLogger(__name__)

READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError)  # a shard cut short, gone, or not a tar
#: errors that reading again cannot mend: a file that is not there or not a file, or not ours to read
LASTING_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _transient(error: BaseException) -> bool:
    """Whether reading again may succeed: an ``OSError`` of a dropped connection or a failed command."""
    return isinstance(error, OSError) and not isinstance(error, LASTING_OS_ERRORS)


class ShardRange(NamedTuple):
    """Samples ``start`` to ``stop`` (exclusive) of shard ``shard``, at epoch positions from ``position``."""

    shard: int
    start: int
    stop: int
    position: int


def shard_ranges(counts: Sequence[int], order: Sequence[int], first: int, length: int) -> List[ShardRange]:
    """Epoch positions ``first`` to ``first + length`` of the list of the shards' samples (shard ``s``
    holds ``counts[s]``) in shard order ``order``, going round the list when it is shorter, as ranges of
    consecutive samples of one shard."""
    ends = np.cumsum([counts[s] for s in order]).tolist()
    total = ends[-1] if ends else 0
    if total == 0 and length:
        raise InputError("the shard manifest lists no samples")
    ranges, position = [], first
    while position < first + length:
        at = position % total
        k = bisect.bisect_right(ends, at)
        start = at - (ends[k] - counts[order[k]])
        take = min(counts[order[k]] - start, first + length - position)
        ranges.append(ShardRange(order[k], start, start + take, position))
        position += take
    return ranges


def tar_samples(stream: BinaryIO, url: str) -> Iterator[Dict[str, Any]]:
    """The samples of a tar stream, ``{"__key__", "__url__", ext: bytes}`` (a sample's members are
    adjacent). A sample is yielded once its ``.jpg`` and ``.json`` are read (the format's two members),
    so taking a sample never reads into the next; one that lacks a member is yielded as it is when the
    next one starts or the stream ends. A read error is raised after the samples read before it."""
    sample: Dict[str, Any] = {}
    for member in tar_file_iterator(stream):
        key, ext = base_plus_ext(member["fname"])
        if sample and sample["__key__"] != key:
            yield sample
            sample = {}
        sample = sample or {"__key__": key, "__url__": url}
        sample[ext] = member["data"]
        if "jpg" in sample and "json" in sample:
            yield sample
            sample = {}
    if sample:
        yield sample


def check_shard_location(folder: str, url_prefix: Optional[str] = None) -> None:
    """A one-line error, before any data-loader worker starts, when WebDataset cannot open the shards:
    a ``url_prefix`` of a scheme it does not open, or without one a remote ``folder`` (``<scheme>://``)
    of such a scheme (the folder's manifest and indexes are read through iopath, its shards through
    WebDataset)."""
    location, key = (url_prefix, "url_prefix") if url_prefix else (folder, "config.data.shards")
    scheme = urlparse(location).scheme if url_prefix or "://" in folder else ""
    if scheme and scheme != "file" and scheme not in gopen_schemes:
        advice = "" if url_prefix else "set url_prefix to where WebDataset reads the shards: "
        raise ConfigError(
            f"{key}={location!r}: WebDataset opens no {scheme}: URLs; {advice}use a local folder, "
            f"file://<folder>, pipe:<command writing the shard named last to stdout>, or one of "
            f"{', '.join(sorted(k for k in gopen_schemes if not k.startswith('_')))}"
        )


def local_folder(folder: str, url_prefix: Optional[str]) -> Optional[str]:
    """The local folder of the shard files (``url_prefix`` ``file://<folder>``, or no prefix and a local
    ``folder``), where a worker enters a shard with a seek; None when they are streamed from elsewhere."""
    if url_prefix is None:
        return None if "://" in folder else folder
    parsed = urlparse(url_prefix)
    return url2pathname(parsed.path) if parsed.scheme == "file" and parsed.netloc in ("", "localhost") else None


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
        subset: train on this many of the samples (None: all): the ones the indexed reader's
            ``config.data.subset`` draws with ``seed`` (:func:`subset_indices`).
        read_attempts: reads of a shard that stopped on an ``OSError`` (a dropped connection, a failed
            ``pipe:`` command) before its remaining samples are counted as damaged; each re-read starts
            at the sample the last one stopped at, and one that gets further starts the count again.
        retry_delay_s: the wait before the first re-read, doubled before each next one.
    """

    resume_needs_same_workers = True  # each data-loader worker reads its own share of the epoch

    def __init__(
        self,
        folder: str,
        batch_size: int,
        transform: Callable,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        buffer: int = 1000,
        url_prefix: Optional[str] = None,
        collate: Callable = collate_readable,
        comment_target: str = "histogram",
        subset: Optional[int] = None,
        read_attempts: int = 3,
        retry_delay_s: float = 1.0,
    ):
        check_shard_location(folder, url_prefix)
        if int(read_attempts) < 1 or retry_delay_s < 0:
            raise ConfigError(
                f"config.data.dataset: read_attempts={read_attempts} and retry_delay_s={retry_delay_s}; "
                "read_attempts is at least 1, retry_delay_s at least 0"
            )
        manifest = read_manifest(folder)
        self.names = [s["name"] for s in manifest["shards"]]
        self.urls = [f"{url_prefix or folder}/{name}.tar" for name in self.names]
        self.sizes = [int(s["samples"]) for s in manifest["shards"]]
        kept = subset_indices(sum(self.sizes), subset, seed)
        starts = np.cumsum([0] + self.sizes).tolist()
        self.kept = None if kept is None else [kept[(kept >= a) & (kept < b)] - a for a, b in zip(starts, starts[1:])]
        self.counts = self.sizes if self.kept is None else [len(k) for k in self.kept]  # the samples each shard gives
        self.local = local_folder(folder, url_prefix)
        self.read_attempts, self.retry_delay_s = int(read_attempts), retry_delay_s
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

    def share_ranges(self, share: int, shares: int) -> List[ShardRange]:
        """The ranges of samples that share ``share`` of ``shares`` (one per data-loader worker) reads this
        epoch: those of the rank's batches ``j`` with ``j % shares == share``."""
        quotas = [len(range(k, len(self), shares)) for k in range(shares)]
        order = list(range(len(self.urls)))
        random.Random(self.seed * SEED_STRIDE + self.epoch).shuffle(order)
        first = (self.rank * len(self) + sum(quotas[:share])) * self.batch_size
        return shard_ranges(self.counts, order, first, quotas[share] * self.batch_size)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        share = (worker + self.start_batch) % workers
        ranges = self.share_ranges(share, workers)
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{share}")
        stream = wds.shuffle(self.buffer, initial=min(self.buffer, 100), rng=rng)(self._read(ranges))
        skip = len(range(share, min(self.start_batch, len(self)), workers))
        for count in range(len(range(share, len(self), workers))):
            batch = [next(stream) for _ in range(self.batch_size)]
            if count < skip:
                continue  # a resume: these batches were trained on before the stop
            yield self.collate([self._item(sample, position) for sample, position in batch])

    def _positions(self, shard_range: ShardRange) -> List[int]:
        """The places in its shard of ``shard_range``'s samples (with ``subset``: of the shard's subset samples)."""
        if self.kept is None:
            return list(range(shard_range.start, shard_range.stop))
        return self.kept[shard_range.shard][shard_range.start : shard_range.stop].tolist()

    def _read(self, ranges: Sequence[ShardRange]) -> Iterator[Tuple[Dict[str, Any], int]]:
        """``(raw sample, epoch position)`` of every sample of ``ranges``, in order, reading nothing of a
        shard past a range's last sample; a sample the shard does not deliver comes as
        ``{"__url__", "__key__"}`` alone (skipped and counted). A read stopped by an ``OSError`` is made
        again (``read_attempts``) from the sample it stopped at, so it yields what an uninterrupted
        read yields."""
        for shard_range in ranges:
            wanted = self._positions(shard_range)
            got = failures = 0
            while got < len(wanted):
                before = got
                try:
                    samples = self._shard_samples(shard_range.shard, wanted[got], wanted[-1] + 1)
                    for at, sample in enumerate(samples, wanted[got]):
                        if at == wanted[got]:
                            yield sample, shard_range.position + got
                            got += 1
                    if got < len(wanted):
                        self._report(
                            shard_range.shard,
                            f"holds fewer samples than its manifest's {self.sizes[shard_range.shard]}",
                        )
                    break
                except READ_ERRORS as e:
                    failures = 1 if got > before else failures + 1
                    if got < len(wanted) and _transient(e) and failures < self.read_attempts:
                        delay = self.retry_delay_s * 2 ** (failures - 1)
                        logger.warning(
                            "%s: %s; read again from sample %d in %.3g s",
                            self.urls[shard_range.shard],
                            error_text(e),
                            wanted[got],
                            delay,
                        )
                        time.sleep(delay)
                        continue
                    if got < len(wanted):
                        self._report(shard_range.shard, f"unreadable after sample {wanted[got]} ({error_text(e)})")
                    break
            for k in range(got, len(wanted)):
                yield (
                    {"__url__": self.urls[shard_range.shard], "__key__": f"sample {wanted[k]}"},
                    shard_range.position + k,
                )

    def _shard_samples(self, shard: int, start: int, stop: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Shard ``shard``'s samples ``start`` to ``stop`` (exclusive; None: to its end), reading none
        past them: entered with one seek when the shard is a local file whose index points at sample
        ``start``'s first member, else read from the start. A stream that ends or breaks off, and whose
        close then fails (a ``pipe:`` command or download that exited with an error), raises that
        ``OSError``: what :meth:`_read` reads again."""
        url = self.urls[shard]
        stream = self._open_at(shard, start) if self.local is not None and start else None
        first = start if stream is not None else 0  # the place of the stream's first sample
        if stream is None:
            try:
                stream = wds.gopen(url, "rb")
            except ValueError as e:  # webdataset's word for a URL it will not open: a setting, not a bad shard
                raise ConfigError(f"{url}: {e}") from None
        try:
            for at, sample in enumerate(tar_samples(stream, url), first):
                if at >= start:
                    yield sample
                if stop is not None and at + 1 >= stop:
                    break
            else:
                stream.close()  # at its end: a command or download that failed says so here
        except READ_ERRORS as e:
            try:
                stream.close()
            except OSError as failed:
                raise failed from e
            raise
        finally:
            try:
                stream.close()
            except OSError:  # a pipe closed before its command finished
                pass

    def _open_at(self, shard: int, start: int) -> Optional[BinaryIO]:
        """The local shard file positioned at sample ``start``'s first member header; None when the
        index is missing or does not point at that member."""
        try:
            row, jpg_offset = (
                int(v)
                for v in np.load(os.path.join(self.folder, f"{self.names[shard]}.idx.npy"), mmap_mode="r")[start, :2]
            )
            f = open(os.path.join(self.local, f"{self.names[shard]}.tar"), "rb")
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
        return {"input": with_file_name(image, where), "target": target}

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
    ``folder`` (default ``config.data.shards``), ``buffer``, ``url_prefix``, ``read_attempts``,
    ``retry_delay_s``, and the image settings, ``subset`` and seed every pretraining dataset gets; the
    rank and world size come from the environment (``torchrun`` / the submitit launcher)."""

    def __init__(
        self,
        folder: str,
        batchsize_per_replica: int = 64,
        image_size: int = 224,
        crop_scale_min: float = 0.08,
        seed: int = 0,
        buffer: int = 1000,
        url_prefix: Optional[str] = None,
        decode_on: str = "loader",
        comment_target: str = "histogram",
        subset: Optional[int] = None,
        read_attempts: int = 3,
        retry_delay_s: float = 1.0,
    ):
        transform, collate = training_pipeline(decode_on, image_size, crop_scale_min)
        stream = StreamingShards(
            folder,
            batchsize_per_replica,
            transform,
            rank_from_env(),
            world_size_from_env(),
            seed,
            buffer,
            url_prefix,
            collate,
            comment_target,
            subset,
            read_attempts,
            retry_delay_s,
        )
        super().__init__(stream, batchsize_per_replica, False, transform=None, num_samples=None)

    @classmethod
    def check_inputs(cls, config: Mapping[str, Any]) -> str:
        folder = config.get("folder") or (config.get("data") or {}).get("shards")
        if not folder:
            raise InputError("streaming_shards reads config.data.shards=<folder of manifest.json>; it is unset")
        check_shard_location(folder, config.get("url_prefix"))
        read_manifest(folder)
        return folder

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "StreamingShardsDataset":
        folder = cls.check_inputs(config)
        return cls(
            folder,
            config["batchsize_per_replica"],
            config.get("image_size", 224),
            config.get("crop_scale_min", 0.08),
            config.get("seed", 0),
            config.get("buffer", 1000),
            config.get("url_prefix"),
            config.get("decode_on", "loader"),
            (config.get("data") or {}).get("comment_target") or "histogram",
            config.get("subset"),
            config.get("read_attempts", 3),
            config.get("retry_delay_s", 1.0),
        )
