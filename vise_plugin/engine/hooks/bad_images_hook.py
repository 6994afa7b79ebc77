"""The unreadable-image budget of a run: each batch's skipped images counted, judged, and kept in the checkpoints."""

from typing import Dict, Mapping

import torch
import torch.distributed as dist

from vise_plugin.data.bad_images import BadImageBudget
from vise_plugin.engine.hooks.base import HookBase

NONE_SEEN = {"seen": 0, "skipped": 0}


class BadImageHook(HookBase):
    """Counts the images each batch skipped (``trainer.skipped_images``: not read, or not decoded on the
    device) among those it held, and stops the run with :class:`InputError` when they are over ``budget``.

    One process judges its counts at every batch with a skipped image. Several ranks judge the sums of
    all ranks' counts (an all-reduce, so that every rank stops after the same step instead of leaving
    the others waiting in the next all-reduce) every ``trainer.preemption_check_every`` iterations, as
    they agree on a preemption. Before every checkpoint and after the last step the counts are agreed
    on and judged too; the checkpoint's ``bad_images`` entry holds the sums, which a resume hands to the
    first rank (the others count from 0), so they go on where they stopped.

    Args:
        budget: the counts and the share of unreadable images allowed (``config.data.max_bad_image_fraction``).
    """

    state_key = "bad_images"

    def __init__(self, budget: BadImageBudget):
        self.budget = budget
        self._agreed = dict(NONE_SEEN)  # every rank's counts at their last agreement

    def before_step(self, trainer) -> None:
        self.budget.record(trainer.skipped_images, trainer.images_read, judge=trainer.world_size == 1)

    def after_step(self, trainer) -> None:
        ranks_agree = trainer.world_size > 1 and trainer.iteration % trainer.preemption_check_every == 0
        if ranks_agree or trainer.iteration == trainer.max_iterations:
            self.agree(trainer)

    def before_checkpoint(self, trainer) -> None:
        self.agree(trainer)

    def agree(self, trainer) -> None:
        """Judges the counts of every rank: this process's, or with several ranks their sums (an all-reduce:
        every rank calls this at the same iterations)."""
        if trainer.world_size == 1:
            self._agreed = self.budget.state_dict()
        else:
            counts = torch.tensor([self.budget.seen, self.budget.skipped], dtype=torch.int64, device=trainer.device)
            dist.all_reduce(counts)
            seen, skipped = counts.tolist()
            self._agreed = {"seen": seen, "skipped": skipped}
        self.budget.judge(self._agreed["skipped"], self._agreed["seen"])

    def state_dict(self) -> Dict[str, int]:
        """``{"seen", "skipped"}`` of all ranks at their last agreement (one before every checkpoint)."""
        return dict(self._agreed)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self._agreed = {"seen": int(state["seen"]), "skipped": int(state["skipped"])}
        first_rank = not dist.is_initialized() or dist.get_rank() == 0
        self.budget.load_state_dict(self._agreed if first_rank else NONE_SEEN)
