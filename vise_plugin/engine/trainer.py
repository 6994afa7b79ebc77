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
from vise_plugin.engine.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_KIND,
    Checkpointer,
    CheckpointsUnreadable,
    rng_state,
    set_rng_state,
)
from vise_plugin.engine.determinism import determinism_differences, determinism_record, speed_settings
from vise_plugin.engine.epoch_position import EpochPosition, loader_workers
from vise_plugin.engine.finite_loss import FiniteLossWatch
from vise_plugin.engine.hooks.base import HookBase
from vise_plugin.engine.precision import MixedPrecision
from vise_plugin.launch.preemption import Preempted, PreemptionFlag

logger = logging.getLogger(__name__)


def _to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = batch["input"].to(device, non_blocking=True, memory_format=memory_format)
    targets = {k: v.to(device, non_blocking=True) for k, v in batch["target"].items()}
    return images, targets


def _position_field(name: str, doc: str, settable: bool = True) -> property:
    """A trainer attribute that its :class:`EpochPosition` keeps (hooks read it on the trainer, tests set it)."""
    setter = (lambda self, value: setattr(self.position, name, value)) if settable else None
    return property(lambda self: getattr(self.position, name), setter, doc=doc)


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

    Where training stands (``iteration``, ``epoch``, ``batch_in_epoch``, ``samples_in_epoch``) and how the
    epochs are read (``sampler``, ``num_epochs``) are kept by :attr:`position`, an :class:`EpochPosition`,
    which also takes a checkpoint's position up under other ranks, batch size or workers.

    Hooks see the current batch's :attr:`skipped_images` and :attr:`images_read` (from :meth:`before_step
    <HookBase.before_step>` on), and a hook with a ``state_key`` is saved in the checkpoint under that key
    (its ``state_dict()``) and given it back on a resume.

    Each step adds whether its loss (and each task's) was finite to flags kept on the device
    (:attr:`finite_loss`, a :class:`FiniteLossWatch`); :meth:`check_finite` reads them, and the log and
    checkpoint hooks call it, so a non-finite loss stops the run, on every rank at once, before a checkpoint
    of the damaged weights is written.
    """

    iteration = _position_field("iteration", "Batches trained since the run started.")
    epoch = _position_field("epoch", "Epochs done.")
    batch_in_epoch = _position_field("batch_in_epoch", "Batches of this epoch trained, in the current batches.")
    samples_in_epoch = _position_field("samples_in_epoch", "Samples of this epoch all ranks together have read.")
    sampler = _position_field("sampler", "The batches' order (see ``loader``).")
    num_epochs = _position_field("num_epochs", "Epochs to train.")
    iterations_per_epoch = _position_field("iterations_per_epoch", "Batches in an epoch.", settable=False)
    max_iterations = _position_field("max_iterations", "The iteration training ends at.", settable=False)
    progress = _position_field("progress", "Training progress in ``[0, 1)``: the lr schedule's input.", settable=False)

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
        self.position = EpochPosition.from_loader(loader, num_epochs)
        self._loader = loader
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
        self.skipped_images: List[str] = []  # names of the current batch's images not read (or not decoded)
        self.images_read = 0  # the current batch's images that were read: its input's rows
        self.last_loss: Optional[torch.Tensor] = None
        self.finite_loss = FiniteLossWatch(self.device, self.world_size)
        self._placeholder = (
            placeholder or getattr(loader, "placeholder_batch", None) or partial(placeholder_batch, loader)
        )
        self.speed = (cpu_threads, deterministic)

    @property
    def loader(self) -> Iterable:
        """The batches to train on; one set here (a wrapper, say) gives the position its worker count."""
        return self._loader

    @loader.setter
    def loader(self, loader: Iterable) -> None:
        self._loader = loader
        self.position.loader_workers = loader_workers(loader)

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
            "position": self.position.state_dict(),
            "rng": rng_state(),
            **{key: hook.state_dict() for key, hook in self._hooks_with_state()},
            "determinism": determinism_record(self.device),
        }

    def _hooks_with_state(self) -> List[Tuple[str, HookBase]]:
        """``(checkpoint key, hook)`` of the hooks with a ``state_key``."""
        return [(hook.state_key, hook) for hook in self.hooks if getattr(hook, "state_key", None)]

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.base_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.precision.load_state_dict(state["grad_scaler"])
        self.position.load_state_dict(state["position"], state.get("config", {}))
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
        self.finite_loss.watch(self.iteration + 1, loss.detach(), getattr(self.loss, "last_values", {}))
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

    def check_finite(self) -> None:
        """Raises :class:`NonFiniteLossError` when a loss since the start was NaN or infinite (on any rank); every
        rank calls it at the same iterations (:meth:`FiniteLossWatch.first_bad_iteration`)."""
        self.finite_loss.check(self.checkpointer.last_saved if self.checkpointer else None)

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
            if not self.position.start_epoch():
                continue
            for batch in self.loader:
                self._step(batch)
                ended_epoch = self.position.advance()
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
