"""The VisE objective (Jia et al. 2021, Eq. 1): ``L = w_C * L_C + w_R * L_R``."""

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from classy_vision.losses import ClassyLoss, register_loss

from vise_plugin.errors import UserError
from vise_plugin.losses.packed_targets import packed_if_asked

SOFT_TARGET_TASKS = ("comments",)


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(B,)`` over the rows where ``keep`` ``(B,)`` bool is true; 0 (with finite,
    zero gradients) when none is. No data-dependent shape and no Python branch on a tensor, so the
    GPU is never waited for."""
    kept = torch.where(keep, values, torch.zeros_like(values))
    return kept.sum() / keep.sum().clamp_min(1)


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean soft-target CE over posts whose target row is non-zero.

    Args:
        logits: ``(B, K)``.
        target: ``(B, K)`` float, each row sums to 1 or is all zero (post left out).
    Returns:
        Scalar; 0 (still attached to ``logits``) when no row is non-zero.
    """
    target = target.float()
    per_post = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    return masked_mean(per_post, target.sum(dim=1) > 0)


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CE over posts with ``target >= 0``.

    Args:
        logits: ``(B, K)``.
        target: ``(B,)`` int64 class ids, ``-1`` for a post left out.
    Returns:
        Scalar; 0 (still attached to ``logits``) when every post is left out.
    """
    keep = target >= 0
    per_post = F.cross_entropy(logits.float(), target.clamp_min(0), reduction="none")
    return masked_mean(per_post, keep)


def checked_target(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``target`` of ``task`` as its criterion reads it, from its dtype and shape alone (no value is
    read, so the GPU is not waited for): a soft-target task's float ``(B, K)`` as it is, a class-id
    task's ``(B,)`` of any integer dtype as int64 (the label store's ``reactions.npy`` is int32).
    Anything else is a one-line :class:`UserError` naming the task, what was expected and what was given.

    Args:
        logits: ``(B, K)``.
    """
    soft = task in SOFT_TARGET_TASKS
    if logits.dim() != 2:
        raise UserError(f"vise_loss: {task} logits: expected (B, K), given {tuple(logits.shape)}")
    shape = tuple(logits.shape) if soft else tuple(logits.shape[:1])
    integer = not (target.is_floating_point() or target.is_complex() or target.dtype == torch.bool)
    if tuple(target.shape) != shape or not (target.is_floating_point() if soft else integer):
        expected = "float cluster histograms" if soft else "integer class ids"
        raise UserError(
            f"vise_loss: {task} target: expected {expected} of shape {shape} for logits "
            f"{tuple(logits.shape)}, given {target.dtype} {tuple(target.shape)}"
        )
    return target if soft else target.long()


@register_loss("vise_loss")
class VisELoss(ClassyLoss):
    """Weighted sum of per-task losses over the tasks present in the model output.

    ``comments`` uses soft-target CE on the normalised cluster histogram (Mahajan et al. 2018);
    every other task (``reactions``) uses plain CE on a cluster id.

    Args:
        weights: ``{task: weight}``; a task missing here has weight 1.

    Forward takes ``output``: ``{task: logits (B, K)}``, or a list of them, one per view of the same
    images (e.g. SimCLR's two crops), and ``target``: ``{"comments": (B, Kc) float, "reactions": (B,)
    int}`` (see "Contracts" in the docs). It returns a scalar: the weighted sum over tasks, averaged
    over the views. ``last_values`` holds each task's detached loss of the latest call, averaged over
    its views, for logging.
    """

    outputs = ("comments", "reactions")  # what it reads of a model's outputs by default

    def __init__(self, weights: Optional[Mapping[str, float]] = None):
        super().__init__()
        self.weights = dict(weights or {})
        self.last_values: Dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VisELoss":
        """``weights``; with ``packed_targets`` (VISSL), targets packed in one tensor are unpacked first."""
        return packed_if_asked(cls(weights=config.get("weights")), config)

    def forward(
        self,
        output: Union[Mapping[str, torch.Tensor], Sequence[Mapping[str, torch.Tensor]]],
        target: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        """The VisE loss of a batch.

        Args:
            output: ``{task: logits (B, K_task)}`` (e.g. [`VisEMultiHead`][vise_plugin.VisEMultiHead]'s), or a
                list of them, one per view of the same ``B`` images.
            target: ``{"comments": (B, Kc) float, "reactions": (B,) integer}`` (e.g.
                [`VisETargets.batch`][vise_plugin.VisETargets.batch]'s); a post with an all-zero ``comments``
                row or ``reactions`` ``-1`` is left out of that task's mean.

        Returns:
            A scalar: ``sum over tasks of weight x mean loss``, averaged over the views.
        """
        views = [output] if isinstance(output, Mapping) else list(output)
        if not views:
            raise ValueError("vise_loss: no model output (an empty list of views)")
        total = None
        sums: Dict[str, torch.Tensor] = {}
        for view in views:
            for task, logits in view.items():
                if task not in target:
                    raise KeyError(f"vise_loss: the model predicts {task!r} but the batch has no {task!r} target")
                criterion = soft_target_cross_entropy if task in SOFT_TARGET_TASKS else masked_cross_entropy
                value = criterion(logits, checked_target(task, logits, target[task]))
                sums[task] = value.detach() if task not in sums else sums[task] + value.detach()
                weighted = self.weights.get(task, 1.0) * value
                total = weighted if total is None else total + weighted
        self.last_values = {task: value / len(views) for task, value in sums.items()}
        return total / len(views) if len(views) > 1 else total
