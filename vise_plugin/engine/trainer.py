"""The pretraining loop: one step is forward, the loss (VisE, web tags or both), backward and an SGD update.

Kept small on purpose (detectron2's ``SimpleTrainer``): the loop reads no value back from the GPU
except on logged iterations, the batches come ready to train on (decoded on the device by the data side,
:class:`DeviceDecodedLoader`, when the loader leaves them encoded), and everything that varies by run
(logging, checkpoints, the unreadable-image budget) is a hook.
"""

import logging
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from fvcore.common.param_scheduler import ParamScheduler

from vise_plugin.data.bad_images import SKIPPED, placeholder_batch
from vise_plugin.data.resumable_sampler import ResumableBatchSampler
from vise_plugin.engine.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_KIND,
    Checkpointer,
    CheckpointsUnreadable,
    rng_state,
    set_rng_state,
)
from vise_plugin.engine.determinism import determinism_differences, determinism_record, speed_settings
from vise_plugin.engine.hooks.base import HookBase
from vise_plugin.engine.precision import MixedPrecision
from vise_plugin.errors import ConfigError, NonFiniteLossError
from vise_plugin.launch.preemption import Preempted, PreemptionFlag

logger = logging.getLogger(__name__)


def _to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = batch["input"].to(device, non_blocking=True, memory_format=memory_format)
    targets = {k: v.to(device, non_blocking=True) for k, v in batch["target"].items()}
    return images, targets


def _ranks(count: int) -> str:
    return f"{count} rank" + ("s" if count != 1 else "")


def batchnorm_statistics(model: nn.Module) -> List[torch.Tensor]:
    """The running means, variances and batch counts of every BatchNorm layer of ``model`` (SyncBatchNorm included)."""
    return [
        buffer
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
        if buffer is not None
    ]


class Trainer:
    """Trains ``model`` on the batches of ``loader`` for ``num_epochs``.

    Args:
        model: the network to call, ``(B, 3, H, W)`` -> ``{task: logits (B, K)}``; may be wrapped in
            DDP and/or ``torch.compile``.
        base_model: the unwrapped model (whose state dict is saved).
        loss: ``(output, target dict) -> scalar``, e.g. :class:`VisELoss`.
        optimizer: a ``torch.optim`` optimizer.
        lr_schedule: fvcore schedule of training progress in ``[0, 1)`` (:attr:`progress`: epochs and the share
            of the epoch's samples read), applied before every step.
        loader: a DataLoader whose ``batch_sampler`` is a :class:`ResumableBatchSampler`, or over an iterable
            dataset with the same ``set_epoch``/``len``/``batch_size``/``world_size``/``num_items``
            (:class:`StreamingShards`), or such a loader wrapped by :class:`DeviceDecodedLoader`. Its batches
            are ``{"input": (B, 3, H, W), "target": {task: tensor}, "skipped": [names]}``: ``skipped`` names
            the images that could not be read (see :attr:`skipped_images`), and a batch with none read
            has no ``input`` nor ``target``.
        num_epochs: epochs to train.
        device: where the model is.
        precision: the :class:`MixedPrecision` of forward and backward.
        channels_last: feed images in channels-last memory format.
        hooks: called in order (see :class:`HookBase`).
        checkpointer: where state dicts go; None saves nothing.
        preemption: the flag set by the preemption signal; None ignores it.
        preemption_check_every: iterations between the all-reduce that makes ranks agree on a preemption
            (a single process checks every step); hooks that agree on counts of all ranks do so then too
            (:class:`BadImageHook`).
        extra_state: saved with every checkpoint (trunk name, tasks, resolved config).
        placeholder: returns a batch of the loader's shapes with nothing to learn (default: the loader's
            ``placeholder_batch``, or :func:`placeholder_batch` of it); a rank whose whole batch is unreadable
            steps on it with weight 0, so it still joins the other ranks' gradient all-reduce
            (:meth:`placeholder_step`; a single process skips the step).
        cpu_threads, deterministic: ``config.speed.cpu_threads`` and ``config.speed.deterministic``, in force
            while :meth:`train` runs (see :func:`speed_settings`) and put back when it returns.

    The position in an epoch is also kept as ``samples_in_epoch``, the samples of the epoch all ranks
    together have read (``batch_in_epoch x batch size x ranks``, at most the epoch's items): a map-style
    epoch (:class:`ResumableBatchSampler`) resumes from it with any number of ranks, batch size or
    workers, and ``batch_in_epoch`` then counts in the current batches, so that the resumed epoch ends
    when its last batch is read.

    Hooks see the current batch's :attr:`skipped_images` and :attr:`images_read` (from :meth:`before_step
    <HookBase.before_step>` on), and a hook with a ``state_key`` is saved in the checkpoint under that key
    (its ``state_dict()``) and given it back on a resume.

    Each step adds whether its loss (and each task's) was finite to flags kept on the device;
    :meth:`check_finite` reads them, and the log and checkpoint hooks call it, so a non-finite loss
    stops the run, on every rank at once, before a checkpoint of the damaged weights is written.
    """

    def __init__(
        self,
        model: nn.Module,
        base_model: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_schedule: ParamScheduler,
        loader: Iterable,
        num_epochs: int,
        device: torch.device,
        precision: Optional[MixedPrecision] = None,
        channels_last: bool = False,
        hooks: Optional[List[HookBase]] = None,
        checkpointer: Optional[Checkpointer] = None,
        preemption: Optional[PreemptionFlag] = None,
        preemption_check_every: int = 10,
        extra_state: Optional[Dict[str, Any]] = None,
        placeholder: Optional[Callable[[], Mapping[str, Any]]] = None,
        cpu_threads: Optional[int] = None,
        deterministic: bool = False,
    ):
        self.model = model
        self.base_model = base_model
        self.loss = loss
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.loader = loader
        # the batches' order: the loader's sampler, or a dataset that yields whole batches (streaming)
        self.sampler: ResumableBatchSampler = getattr(loader, "batch_sampler", None) or loader.dataset
        self.num_epochs = num_epochs
        self.device = torch.device(device)
        self.precision = precision or MixedPrecision("fp32", self.device.type)
        self.channels_last = channels_last
        self.hooks = list(hooks or [])
        self.checkpointer = checkpointer
        self.preemption = preemption
        self.preemption_check_every = max(int(preemption_check_every), 1)
        self.extra_state = dict(extra_state or {})
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.iteration = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.samples_in_epoch = 0
        self.skipped_images: List[str] = []  # names of the current batch's images not read (or not decoded)
        self.images_read = 0  # the current batch's images that were read: its input's rows
        self.last_loss: Optional[torch.Tensor] = None
        self._first_bad: Dict[str, torch.Tensor] = {}  # task ("" the total) -> () int64 on the device, -1: none
        self._placeholder = (
            placeholder or getattr(loader, "placeholder_batch", None) or partial(placeholder_batch, loader)
        )
        self.speed = (cpu_threads, deterministic)

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

    @property
    def global_batch_size(self) -> int:
        return self.sampler.batch_size * self.world_size

    def summary(self) -> Dict[str, Any]:
        """Where training stands, as plain values."""
        return {
            "iteration": self.iteration,
            "epoch": self.epoch,
            "max_iterations": self.max_iterations,
            "last_loss": None if self.last_loss is None else float(self.last_loss),
        }

    def state_dict(self) -> Dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            **self.extra_state,
            "model": self.base_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.precision.state_dict(),
            "position": {
                "iteration": self.iteration,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "samples_in_epoch": self.samples_in_epoch,
                **self._reading(),
            },
            "rng": rng_state(),
            **{key: hook.state_dict() for key, hook in self._hooks_with_state()},
            "determinism": determinism_record(self.device),
        }

    def _hooks_with_state(self) -> List[Tuple[str, HookBase]]:
        """``(checkpoint key, hook)`` of the hooks with a ``state_key``."""
        return [(hook.state_key, hook) for hook in self.hooks if getattr(hook, "state_key", None)]

    def _reading(self) -> Dict[str, int]:
        """How the epoch is read: by how many ranks, in batches of how many items, with how many loader workers."""
        return {
            "loader_workers": self.loader_workers,
            "world_size": self.sampler.world_size,
            "batch_size": self.sampler.batch_size,
        }

    @property
    def loader_workers(self) -> int:
        """The data-loader's worker processes (at least 1: the main process reads without any)."""
        return max(int(getattr(self.loader, "num_workers", 0) or 0), 1)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.base_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.precision.load_state_dict(state["grad_scaler"])
        position = dict(state["position"])
        if "batch_size" not in position:  # an older checkpoint: its batch size is in its config
            recorded = state.get("config", {}).get("config", {}).get("data", {}).get("batch_size_per_gpu")
            position.update({"batch_size": int(recorded)} if recorded else {})
        self._resume_at(position)
        set_rng_state(state["rng"])
        for key, hook in self._hooks_with_state():
            if key in state:
                hook.load_state_dict(state[key])
        with speed_settings(*self.speed):
            now = determinism_record(self.device)
        differences = determinism_differences(state.get("determinism", {}), now)
        if differences and self.rank == 0:
            logger.warning(
                "resuming under other settings than the checkpoint's (%s): the run goes on exactly where "
                "it stopped, but its weights will agree with an uninterrupted run within float tolerance, "
                "not bit for bit",
                ", ".join(differences),
            )

    def _resume_at(self, position: Mapping[str, int]) -> None:
        """Takes the checkpoint's position; for checkpoints without the sample position (older ones) it is
        counted in their batches, on as many ranks as now."""
        self.iteration, self.epoch = position["iteration"], position["epoch"]
        self.batch_in_epoch = position["batch_in_epoch"]
        now = self._reading()
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
        if self.samples_in_epoch >= self.sampler.num_items:  # past the epoch as it now is: train() goes on to the next
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

    def resume_or_start(self) -> bool:
        """Loads the newest readable checkpoint of the run folder; returns whether there was one.

        The first rank chooses the file and every rank loads that one, so a read error on one rank
        cannot make the replicas start from different places. When the folder has checkpoint files
        and none loads, every rank raises :class:`CheckpointsUnreadable` (nothing is overwritten).
        """
        if self.checkpointer is None:
            return False
        found, error = None, None
        if self.rank == 0:
            try:
                found = self.checkpointer.latest(self.iterations_per_epoch)
            except CheckpointsUnreadable as e:
                error = str(e)
        if self.world_size > 1:
            agreed = [found[0] if found else None, error]
            dist.broadcast_object_list(agreed, src=0)
            chosen, error = agreed
            if self.rank != 0 and chosen is not None:
                found = (chosen, self.checkpointer.read(chosen))
        if error is not None:
            raise CheckpointsUnreadable(error)
        if found is not None:
            self.load_state_dict(found[1])
        return found is not None

    def start_over(self) -> None:
        """Trains from iteration 0 (``config.resume=false``); checkpoint files already in the run
        folder are moved aside first, so none of them is overwritten."""
        if self.checkpointer is not None and self.rank == 0:
            self.checkpointer.set_aside(
                self.checkpointer.existing(self.iterations_per_epoch), "config.resume=false starts over"
            )

    def run_step(self, batch: Mapping[str, Any], weight: float = 1.0) -> torch.Tensor:
        """One SGD step on ``batch`` (``{"input": (B, 3, H, W), "target": {task: tensor}}``); returns the
        loss, still on the device. ``weight=0`` takes part in the step (and DDP's gradient all-reduce) while adding
        nothing to the gradients."""
        lr = self.lr_schedule(self.progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images, targets = _to_device(batch, self.device, self.channels_last)
        with self.precision.autocast():
            output = self.model(images)
        loss = self.loss(output, targets)
        self._watch_finite(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss * weight if weight != 1.0 else loss, self.optimizer)
        return loss.detach()

    def placeholder_batch(self) -> Mapping[str, Any]:
        """The batch of placeholder items a rank with nothing read steps on (see ``placeholder``)."""
        return self._placeholder()

    def placeholder_step(self, placeholder: Mapping[str, Any]) -> None:
        """The step of a rank whose whole batch was unreadable while the others step: weight 0 on
        ``placeholder`` (:meth:`placeholder_batch`), so that it joins their gradient all-reduce; the BatchNorm
        statistics its black images moved are put back (copies on the device, read by nothing on the host).
        With SyncBatchNorm the black images are part of that one step's batch statistics on every rank, and
        only this rank's running statistics are put back (DDP hands the first rank's to all at the next step)."""
        statistics = batchnorm_statistics(self.base_model)
        kept = [buffer.clone() for buffer in statistics]
        self.run_step(placeholder, weight=0.0)
        with torch.no_grad():
            for buffer, value in zip(statistics, kept):
                buffer.copy_(value)

    def _watch_finite(self, loss: torch.Tensor) -> None:
        """Notes, without waiting for the device, the first iteration whose loss (and each task's) is
        not finite."""
        values = {"": loss, **getattr(self.loss, "last_values", {})}
        for task, value in values.items():
            first = self._first_bad.get(task)
            if first is None:
                first = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self._first_bad[task] = torch.where(~torch.isfinite(value) & (first < 0), self.iteration + 1, first)

    def _first_bad_iteration(self) -> int:
        """The first iteration whose total loss was not finite on any rank, -1 if none. With several
        processes every rank must call this at the same iterations (it all-reduces), so that all of
        them stop together even when only one saw the bad loss."""
        first = self._first_bad.get("")
        if first is None:
            first = torch.full((), -1, dtype=torch.int64, device=self.device)
        if self.world_size == 1:
            return int(first)
        never = torch.iinfo(torch.int64).max
        first = torch.where(first < 0, never, first)
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
        return -1 if int(first) == never else int(first)

    def check_finite(self) -> None:
        """Raises :class:`NonFiniteLossError` when a loss since the start was NaN or infinite (on any rank)."""
        first = self._first_bad_iteration()
        if first < 0:
            return
        local = {task: int(it) for task, it in self._first_bad.items()}
        bad = sorted((it, task) for task, it in local.items() if task and it >= 0)
        tasks = "; ".join(f"{task}" if it == first else f"{task} from iteration {it}" for it, task in bad)
        where = tasks or ("the total" if local.get("", -1) >= 0 else "on another rank")
        saved = self.checkpointer.last_saved if self.checkpointer else None
        raise NonFiniteLossError(
            f"the loss became non-finite at iteration {first} ({where}); stopped without saving; "
            + (
                f"the last good checkpoint is {saved[0]} (iteration {saved[1]})"
                if saved
                else "no checkpoint was written before it"
            )
        )

    def _should_stop_for_preemption(self) -> bool:
        """Whether to stop now for a preemption. With several ranks, every ``preemption_check_every``
        iterations they agree on it (an all-reduce), so every rank stops after the same step."""
        requested = self.preemption is not None and self.preemption.requested
        if self.world_size == 1:
            return requested
        if self.iteration % self.preemption_check_every:
            return False
        flag = torch.tensor([int(requested)], dtype=torch.int64, device=self.device)
        dist.all_reduce(flag)
        return int(flag.item()) > 0

    def call_hooks(self, method: str) -> None:
        """Calls ``method`` (e.g. ``"after_step"``) of every hook, in order, with the trainer."""
        for hook in self.hooks:
            getattr(hook, method)(self)

    def train(self) -> None:
        """Trains from the current position to the end, under the trainer's thread count and kernel flags;
        raises :class:`Preempted` after saving ``checkpoint.torch`` when the preemption flag is set."""
        with speed_settings(*self.speed):
            self._train()

    def _train(self) -> None:
        self.model.train()
        self.call_hooks("before_train")
        while self.epoch < self.num_epochs:
            if not self._start_epoch():
                continue
            for batch in self.loader:
                self._step(batch)
                ended_epoch = self._count_batch()
                self.call_hooks("after_step")
                if ended_epoch:
                    self.call_hooks("after_epoch")
                if self._should_stop_for_preemption():
                    self.call_hooks("on_preempt")
                    raise Preempted(
                        self.iteration,
                        self.checkpointer.path(CHECKPOINT_FILE) if self.checkpointer else "no checkpoint",
                    )
        self.check_finite()
        self.call_hooks("after_train")

    def _start_epoch(self) -> bool:
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

    def _step(self, batch: Dict[str, Any]) -> None:
        """The ``before_step`` hooks, then the step on ``batch``; a batch with no image read has none, but
        with several ranks this one steps on the placeholder batch, as the others' gradient all-reduce
        needs it."""
        self.skipped_images = list(batch.pop(SKIPPED, []))
        self.images_read = len(batch["input"]) if "input" in batch else 0
        self.call_hooks("before_step")
        if "input" in batch:
            self.last_loss = self.run_step(batch)
        elif self.world_size > 1:
            self.placeholder_step(self.placeholder_batch())

    def _count_batch(self) -> bool:
        """Moves the position past the batch just trained on; returns whether that ended the epoch."""
        self.iteration += 1
        self.batch_in_epoch += 1
        self.samples_in_epoch = min(
            self.samples_in_epoch + self.sampler.batch_size * self.sampler.world_size, self.sampler.num_items
        )
        if self.batch_in_epoch != self.iterations_per_epoch:
            return False
        self.epoch, self.batch_in_epoch, self.samples_in_epoch = self.epoch + 1, 0, 0
        return True
