"""Batches of (item, seed) pairs whose order and augmentation depend only on (seed, epoch, position).

A run that stops anywhere and starts again from its checkpoint reads the same batches with the same
random crops as a run that never stopped, whatever the number of data-loading workers; one that
starts again with another number of ranks or another batch size reads the rest of the epoch, each
item once, with the same crops.
"""

from typing import Iterator, List, Optional, Sequence, Tuple

import torch

SEED_STRIDE = 1_000_003  # a prime: item seeds of different epochs do not collide for epochs < stride


class ResumableBatchSampler(torch.utils.data.Sampler):
    """The batches one rank reads in an epoch, from any batch on.

    Every epoch draws a permutation of ``range(num_items)`` from ``(seed, epoch)``, pads it by
    repeating its start to a multiple of ``world_size`` (as ``DistributedSampler``) and gives rank
    ``r`` positions ``r, r + world_size, ...``, cut into batches (the last may be short). Each item
    comes with its own augmentation seed, ``(seed * 1_000_003 + epoch) * num_items + item``.

    After ``b`` batches on every rank, all ranks together have read the first ``b * batch_size *
    world_size`` positions of the epoch's order (the padding comes last, so fewer than ``num_items``
    inside an epoch). :meth:`set_epoch` with ``start_sample`` starts from such a position: the rest
    of the order, padded again by repeating the order's start, is split among the current ranks
    the same way, so a run resumed with another number of ranks or another batch size reads every
    item of the epoch once (the padding aside); with the settings of the run that stopped it reads
    exactly the batches that run would have read.

    Args:
        num_items: dataset length.
        batch_size: items per batch on this rank.
        rank, world_size: this process's place among the data-parallel ranks.
        seed: the run's seed.
        shuffle: False keeps the items in order (the seeds still vary per epoch).
        groups: item counts of consecutive groups (e.g. the samples of each tar shard); the epoch's order
            then shuffles the groups and the items within each group, so reads stay grouped by file.
    """

    elastic = True  # resumes at any sample position, with any number of ranks, batch size or workers

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        groups: Optional[Sequence[int]] = None,
    ):
        if num_items <= 0:
            raise ValueError("ResumableBatchSampler needs at least one item")
        self.num_items = num_items
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.groups = None if groups is None else [int(g) for g in groups]
        if self.groups is not None and sum(self.groups) != num_items:
            raise ValueError(f"groups cover {sum(self.groups)} items, not {num_items}")
        self.epoch = 0
        self.start_sample = 0

    def set_epoch(self, epoch: int, start_batch: int = 0, start_sample: Optional[int] = None) -> None:
        """The next iteration yields batches ``start_batch, start_batch + 1, ...`` of ``epoch``; given
        ``start_sample`` (the positions of the epoch's order all ranks together have read, maybe with
        other settings), the batches that split the rest of the epoch among the current ranks."""
        self.epoch = epoch
        self.start_sample = start_batch * self.batch_size * self.world_size if start_sample is None else start_sample

    @property
    def items_per_rank(self) -> int:
        return -(-self.num_items // self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on each rank (the same on every rank)."""
        return -(-self.items_per_rank // self.batch_size)

    def batches_after(self, start_sample: int) -> int:
        """Batches each rank reads to finish the epoch from position ``start_sample`` (see :meth:`set_epoch`)."""
        per_rank = -(-max(self.num_items - start_sample, 0) // self.world_size)
        return -(-per_rank // self.batch_size)

    def epoch_order(self) -> torch.Tensor:
        """``(num_items,)`` int64: the current epoch's order of all items, before padding."""
        if self.shuffle and self.groups is not None:
            generator = torch.Generator().manual_seed(self.seed * SEED_STRIDE + self.epoch)
            starts = torch.cumsum(torch.tensor([0] + self.groups[:-1]), 0)
            order = torch.cat(
                [
                    starts[g] + torch.randperm(self.groups[g], generator=generator)
                    for g in torch.randperm(len(self.groups), generator=generator).tolist()
                ]
            )
        elif self.shuffle:
            order = torch.randperm(
                self.num_items, generator=torch.Generator().manual_seed(self.seed * SEED_STRIDE + self.epoch)
            )
        else:
            order = torch.arange(self.num_items)
        return order

    def epoch_items(self) -> torch.Tensor:
        """``(n,)`` int64: this rank's items of the current epoch from ``start_sample`` on, in order."""
        order = self.epoch_order()
        rest = order[self.start_sample :]
        padding = -len(rest) % self.world_size
        if padding:
            rest = torch.cat([rest, order.repeat(-(-padding // self.num_items))[:padding]])
        return rest[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        items = self.epoch_items().tolist()
        base = (self.seed * SEED_STRIDE + self.epoch) * self.num_items
        for start in range(0, len(items), self.batch_size):
            yield [(item, base + item) for item in items[start : start + self.batch_size]]
