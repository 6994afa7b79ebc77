"""Streaming pretraining from tar shards (``config.data.reader=streaming``), read with WebDataset.

Each epoch, the shards are put in a seeded order and dealt to the ranks, then to each rank's
data-loader workers; a worker streams its shards through a seeded shuffle buffer and yields whole
batches. Global batch ``j`` of a rank comes from worker ``j % workers`` (the DataLoader's round-robin),
and every worker yields the same quota of batches (a worker short of samples goes round its shards
again), so every rank has the same number of steps and a resume at batch ``b`` is exact: each worker
skips, without decoding, the samples of its batches before ``b``. The shards are local paths or
WebDataset URLs (``pipe:``, ``http(s)://``) given by ``url_prefix``.
"""

import json
import random
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import torch
import webdataset as wds
from classy_vision.dataset import ClassyDataset

from vise_plugin.data.bad_images import SKIPPED, collate_readable
from vise_plugin.data.device_decode import named, training_pipeline
from vise_plugin.data.images import blank_input, load_or_skip
from vise_plugin.data.resumable_sampler import SEED_STRIDE
from vise_plugin.data.tar_shards import ShardTargets, read_manifest
from vise_plugin.errors import InputError
from vise_plugin.registry import register_dataset


class StreamingShards(torch.utils.data.IterableDataset):
    """Batches ``{"input": (B, 3, S, S), "target": {...}, "skipped": [...]}`` streamed from a shard folder.

    Args:
        folder: the shard folder (its ``manifest.json`` lists the shards and their sizes).
        batch_size: images per batch on this rank.
        transform: PIL image -> tensor (the item's seed is drawn from the stream position).
        rank, world_size: this process's place among the data-parallel ranks.
        seed: the run's seed.
        buffer: the shuffle buffer's size, in samples.
        url_prefix: where the shards are read from (default: the folder itself).
        collate: batch builder (default :func:`collate_readable`).
        comment_target: ``histogram`` or ``uniform``, as for :class:`EngagementLabels`.
    """

    def __init__(self, folder: str, batch_size: int, transform: Callable, rank: int = 0, world_size: int = 1,
                 seed: int = 0, buffer: int = 1000, url_prefix: Optional[str] = None,
                 collate: Callable = collate_readable, comment_target: str = "histogram"):
        manifest = read_manifest(folder)
        self.urls = [f"{url_prefix or folder}/{s['name']}.tar" for s in manifest["shards"]]
        self.counts = [s["samples"] for s in manifest["shards"]]
        self.targets = ShardTargets(manifest, comment_target)
        self.folder, self.batch_size, self.transform = folder, batch_size, transform
        self.rank, self.world_size, self.seed, self.buffer = rank, world_size, seed, buffer
        self.collate = collate
        self.num_items = sum(self.counts)
        self.epoch = self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration yields batches ``start_batch, start_batch + 1, ...`` of ``epoch``."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches per epoch on each rank (the same on every rank)."""
        return max(self.num_items // (self.world_size * self.batch_size), 1)

    def _rank_shards(self) -> List[int]:
        order = list(range(len(self.urls)))
        random.Random(self.seed * SEED_STRIDE + self.epoch).shuffle(order)
        mine = order[self.rank::self.world_size]
        return mine or order  # fewer shards than ranks: each rank reads all of them (its own shuffle)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        shards = self._rank_shards()
        mine = [shards[i] for i in range(len(shards)) if i % workers == worker] or shards
        quota = [j for j in range(len(self)) if j % workers == worker]
        skip = sum(1 for j in quota if j < self.start_batch)
        stream = self._samples(mine, worker)
        for count, _ in enumerate(quota):
            batch = [next(stream) for _ in range(self.batch_size)]
            if count < skip:
                continue  # a resume: these batches were trained on before the stop
            yield self.collate([self._item(sample, position) for sample, position in batch])

    def _samples(self, shards: List[int], worker: int) -> Iterator:
        """``(raw sample, stream position)`` pairs of this worker, shuffled, going round its shards forever."""
        position, lap = 0, 0
        while True:
            rng = random.Random(((self.seed * SEED_STRIDE + self.epoch) * SEED_STRIDE + self.rank) * 1_000 + worker + lap)
            pipeline = wds.DataPipeline(wds.SimpleShardList([self.urls[s] for s in shards]),
                                        wds.tarfile_to_samples(handler=wds.warn_and_continue),
                                        wds.shuffle(self.buffer, initial=min(self.buffer, 100), rng=rng))
            for sample in pipeline:
                yield sample, position
                position += 1
            lap += 1

    def _item(self, sample: Dict[str, Any], position: int) -> Dict[str, Any]:
        where = f"{sample.get('__url__', self.folder)}#{sample.get('__key__', '?')}"
        if "jpg" not in sample or "json" not in sample:
            return {SKIPPED: where}
        seed = ((self.seed * SEED_STRIDE + self.epoch) * SEED_STRIDE + self.rank) * 10_000_000 + position
        image = load_or_skip(where, self.transform, seed, skip_unreadable=True, data=sample["jpg"])
        if image is None:
            return {SKIPPED: where}
        try:
            meta = json.loads(sample["json"])
        except ValueError:
            return {SKIPPED: where}
        return {"input": named(image, where), "target": self.targets.of(meta)}

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
        return folder

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "StreamingShardsDataset":
        folder = cls.check_inputs(config)
        return cls(folder, config["batchsize_per_replica"], config.get("image_size", 224),
                   config.get("crop_scale_min", 0.08), config.get("seed", 0), config.get("buffer", 1000),
                   config.get("url_prefix"), config.get("decode_on", "loader"),
                   (config.get("data") or {}).get("comment_target") or "histogram")
