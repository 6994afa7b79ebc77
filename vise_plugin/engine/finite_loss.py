"""The watch for a NaN or infinite loss: noted on the device at every step, read only when asked."""

from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.distributed as dist

from vise_plugin.errors import NonFiniteLossError


class FiniteLossWatch:
    """The first iteration whose loss (the total and each task's) was not finite, kept on the device, so that
    no step waits for it.

    Holds ``first_bad``: task (``""`` the total) -> ``()`` int64 tensor on the losses' device, the first
    iteration (counted after its step: 1 for the first) whose loss was NaN or infinite, -1 while none was.

    Args:
        device: where the losses are (and the flags, before any loss was watched).
        world_size: ranks training together; with several, :meth:`first_bad_iteration` all-reduces.
    """

    def __init__(self, device: torch.device, world_size: int = 1):
        self.device = device
        self.world_size = world_size
        self.first_bad: Dict[str, torch.Tensor] = {}

    def watch(self, iteration: int, loss: torch.Tensor, task_losses: Mapping[str, torch.Tensor]) -> None:
        """Notes, without waiting for the device, whether the step that makes ``iteration`` had a finite
        ``loss`` (a ``()`` tensor) and ``task_losses`` (task -> ``()`` tensor)."""
        for task, value in {"": loss, **task_losses}.items():
            first = self.first_bad.get(task)
            if first is None:
                first = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self.first_bad[task] = torch.where(~torch.isfinite(value) & (first < 0), iteration, first)

    def first_bad_iteration(self) -> int:
        """The first iteration whose total loss was not finite on any rank, -1 if none. With several
        processes every rank must call this at the same iterations (it all-reduces), so that all of
        them stop together even when only one saw the bad loss."""
        first = self.first_bad.get("")
        if first is None:
            first = torch.full((), -1, dtype=torch.int64, device=self.device)
        if self.world_size == 1:
            return int(first)
        never = torch.iinfo(torch.int64).max
        first = torch.where(first < 0, never, first)
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
        return -1 if int(first) == never else int(first)

    def check(self, last_saved: Optional[Tuple[str, int]] = None) -> None:
        """Raises :class:`NonFiniteLossError` when a loss since the start was NaN or infinite (on any rank),
        naming the tasks this rank saw and ``last_saved``, the last good checkpoint's ``(path, iteration)``."""
        first = self.first_bad_iteration()
        if first < 0:
            return
        local = {task: int(it) for task, it in self.first_bad.items()}
        bad = sorted((it, task) for task, it in local.items() if task and it >= 0)
        tasks = "; ".join(f"{task}" if it == first else f"{task} from iteration {it}" for it, task in bad)
        where = tasks or ("the total" if local.get("", -1) >= 0 else "on another rank")
        raise NonFiniteLossError(
            f"the loss became non-finite at iteration {first} ({where}); stopped without saving; "
            + (
                f"the last good checkpoint is {last_saved[0]} (iteration {last_saved[1]})"
                if last_saved
                else "no checkpoint was written before it"
            )
        )
