"""Where in its data training stands, and how a checkpoint's position is taken up under other reading."""

import logging
from typing import Any, Dict, Iterable, Mapping, Optional

from vise_plugin.data.resumable_sampler import ResumableBatchSampler
from vise_plugin.errors import ConfigError

logger = logging.getLogger(__name__)


def _ranks(count: int) -> str:
    return f"{count} rank" + ("s" if count != 1 else "")


def loader_workers(loader: Iterable) -> int:
    """The worker processes of a data loader (at least 1: the main process reads without any)."""
    return max(int(getattr(loader, "num_workers", 0) or 0), 1)


class EpochPosition:
    """The position of training in its epochs, counted in the batches the sampler makes.

    Holds ``iteration`` (batches trained since the run started), ``epoch`` (epochs done), ``batch_in_epoch``
    (batches of this epoch trained) and ``samples_in_epoch`` (the samples of this epoch all ranks together
    have read: ``batch_in_epoch x batch size x ranks``, at most the epoch's items), all plain ints, and how
    the epochs are read: ``sampler``, ``loader_workers`` and ``num_epochs``.

    A map-style epoch (a sampler with ``elastic``: :class:`ResumableBatchSampler`) resumes from
    ``samples_in_epoch`` with any number of ranks, batch size or workers, and ``batch_in_epoch`` then counts
    in the current batches, so that the resumed epoch ends when its last batch is read. A streamed epoch (one
    with ``resume_needs_same_workers``: :class:`StreamingShards`) resumes only as it was read.

    Args:
        sampler: the batches' order: a :class:`ResumableBatchSampler`, or a dataset that yields whole
            batches with the same ``set_epoch``/``len``/``batch_size``/``world_size``/``num_items``.
        loader_workers: the data loader's worker processes (at least 1, see :func:`loader_workers`).
        num_epochs: epochs to train.
    """

    def __init__(self, sampler: ResumableBatchSampler, loader_workers: int, num_epochs: int):
        self.sampler = sampler
        self.loader_workers = loader_workers
        self.num_epochs = num_epochs
        self.iteration = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.samples_in_epoch = 0

    @classmethod
    def from_loader(cls, loader: Iterable, num_epochs: int) -> "EpochPosition":
        """At the start of ``loader``'s epochs: its ``batch_sampler``, or its dataset when that yields whole
        batches (streaming)."""
        return cls(getattr(loader, "batch_sampler", None) or loader.dataset, loader_workers(loader), num_epochs)

    @property
    def iterations_per_epoch(self) -> int:
        return len(self.sampler)

    @property
    def max_iterations(self) -> int:
        """The iteration training ends at: this one, the batches left of this epoch and those of the later ones."""
        left = max(self.iterations_per_epoch - self.batch_in_epoch, 0) if self.epoch < self.num_epochs else 0
        return self.iteration + left + max(self.num_epochs - self.epoch - 1, 0) * self.iterations_per_epoch

    @property
    def progress(self) -> float:
        """Training progress in ``[0, 1)``: the epochs done and the share of this epoch's samples read, over
        all epochs."""
        return (self.epoch + self.samples_in_epoch / self.sampler.num_items) / self.num_epochs

    def reading(self) -> Dict[str, int]:
        """How the epoch is read: by how many ranks, in batches of how many items, with how many loader workers."""
        return {
            "loader_workers": self.loader_workers,
            "world_size": self.sampler.world_size,
            "batch_size": self.sampler.batch_size,
        }

    def state_dict(self) -> Dict[str, int]:
        """The checkpoint's ``position``: the four counts and :meth:`reading`."""
        return {
            "iteration": self.iteration,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "samples_in_epoch": self.samples_in_epoch,
            **self.reading(),
        }

    def load_state_dict(self, position: Mapping[str, int], config: Optional[Mapping[str, Any]] = None) -> None:
        """Takes a checkpoint's ``position``; ``config`` is that checkpoint's resolved config, whose
        ``config.data.batch_size_per_gpu`` stands in for the batch size an older position lacks. Without the
        sample position (older checkpoints) it is counted in their batches, on as many ranks as now."""
        position = dict(position)
        if "batch_size" not in position:
            recorded = (config or {}).get("config", {}).get("data", {}).get("batch_size_per_gpu")
            position.update({"batch_size": int(recorded)} if recorded else {})
        self.iteration, self.epoch = position["iteration"], position["epoch"]
        self.batch_in_epoch = position["batch_in_epoch"]
        now = self.reading()
        saved = {key: position.get(key, value) for key, value in now.items()}
        self.samples_in_epoch = position.get(
            "samples_in_epoch",
            min(self.batch_in_epoch * saved["batch_size"] * saved["world_size"], self.sampler.num_items),
        )
        if getattr(self.sampler, "elastic", False):
            self._split_rest_of_epoch(saved, now)
        elif self.batch_in_epoch and getattr(self.sampler, "resume_needs_same_workers", False):
            self._require_same_reading(saved, now)

    def _split_rest_of_epoch(self, saved: Mapping[str, int], now: Mapping[str, int]) -> None:
        """A map-style epoch goes on from its sample position among the current ranks, in the current batches;
        ``batch_in_epoch`` becomes the epoch's batch count less the batches left, so the epoch ends after its last."""
        if self.samples_in_epoch >= self.sampler.num_items:  # past the epoch as it now is: start_epoch skips it
            self.batch_in_epoch = max(self.batch_in_epoch, self.iterations_per_epoch)
            return
        self.batch_in_epoch = self.iterations_per_epoch - self.sampler.batches_after(self.samples_in_epoch)
        if self.samples_in_epoch and any(saved[key] != now[key] for key in ("world_size", "batch_size")):
            logger.info(
                "resuming epoch %d at sample %d of %d with %s x batch %d (saved with %s x batch %d): the "
                "rest of the epoch is split among the current ranks",
                self.epoch,
                self.samples_in_epoch,
                self.sampler.num_items,
                _ranks(now["world_size"]),
                now["batch_size"],
                _ranks(saved["world_size"]),
                saved["batch_size"],
            )

    @staticmethod
    def _require_same_reading(saved: Mapping[str, int], now: Mapping[str, int]) -> None:
        """A streamed epoch (each data-loader worker's share of its batches, and their shuffle buffers) goes on
        exactly only with the ranks, batch size and workers that read its start: a one-line error names the
        setting to put back."""
        stopped = "the checkpoint stopped inside a streamed epoch read"
        ranks, batch, workers = saved["world_size"], saved["batch_size"], saved["loader_workers"]
        if ranks != now["world_size"]:
            raise ConfigError(
                f"config.distributed: {stopped} by {_ranks(ranks)}, and that epoch goes on exactly "
                f"only with as many; run it on {_ranks(ranks)} (config.distributed.num_nodes x "
                "config.distributed.num_proc_per_node)"
            )
        if batch != now["batch_size"]:
            raise ConfigError(
                f"config.data.batch_size_per_gpu: {stopped} in batches of {batch} per rank, and that "
                f"epoch goes on exactly only with those; set config.data.batch_size_per_gpu={batch}"
            )
        if workers != now["loader_workers"]:
            raise ConfigError(
                f"config.data.num_workers: {stopped} by {workers} data-loader worker(s), and that "
                f"epoch goes on exactly only with as many; set config.data.num_workers="
                f"{workers if workers > 1 else 0}"
            )

    def start_epoch(self) -> bool:
        """Sets the sampler to this epoch's batches from the current position; False, going on to the next
        epoch, when none of them is left (a resume into an epoch that has fewer batches now)."""
        if self.batch_in_epoch >= self.iterations_per_epoch:
            logger.warning(
                "resumed at batch %d of epoch %d, which now has %d batches (the data, the batch size "
                "or the number of ranks changed): going on with epoch %d",
                self.batch_in_epoch,
                self.epoch,
                self.iterations_per_epoch,
                self.epoch + 1,
            )
            self.epoch, self.batch_in_epoch, self.samples_in_epoch = self.epoch + 1, 0, 0
            return False
        if getattr(self.sampler, "elastic", False):
            self.sampler.set_epoch(self.epoch, start_sample=self.samples_in_epoch)
        else:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        return True

    def advance(self) -> bool:
        """Moves past the batch just trained on; returns whether that ended the epoch."""
        self.iteration += 1
        self.batch_in_epoch += 1
        self.samples_in_epoch = min(
            self.samples_in_epoch + self.sampler.batch_size * self.sampler.world_size, self.sampler.num_items
        )
        if self.batch_in_epoch != self.iterations_per_epoch:
            return False
        self.epoch, self.batch_in_epoch, self.samples_in_epoch = self.epoch + 1, 0, 0
        return True
