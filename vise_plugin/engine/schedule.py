"""Learning-rate schedules as functions of training progress (fvcore schedulers), by name in
:data:`vise_plugin.registry.LR_SCHEDULES`; each entry maps the peak lr to the schedule after warm-up."""

from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

from vise_plugin.errors import ConfigError
from vise_plugin.registry import LR_SCHEDULES

WARMUP_START_FACTOR = 0.1


@LR_SCHEDULES.register("cosine")
def cosine(peak_lr: float) -> ParamScheduler:
    """Cosine decay from ``peak_lr`` to 0."""
    return CosineParamScheduler(peak_lr, 0.0)


@LR_SCHEDULES.register("constant")
def constant(peak_lr: float) -> ParamScheduler:
    return ConstantParamScheduler(peak_lr)


def check_lr_schedule(num_epochs: float, warmup_epochs: float, kind: str = "cosine") -> None:
    """Raises the one-line :class:`ConfigError` of :func:`lr_schedule` for these arguments without building
    the schedule (the launcher checks a config before it queues a job)."""
    LR_SCHEDULES.get(kind, "config.optimizer.schedule")
    if 0 < warmup_epochs and warmup_epochs >= num_epochs:
        raise ConfigError(f"config.optimizer.warmup_epochs={warmup_epochs} must be below num_epochs={num_epochs}")


def lr_schedule(peak_lr: float, num_epochs: float, warmup_epochs: float, kind: str = "cosine") -> ParamScheduler:
    """Linear warm-up from ``0.1 * peak_lr`` over ``warmup_epochs``, then the schedule ``kind``.

    The trainer evaluates it before every step at its ``progress``: (epochs done + the share of this epoch's
    samples read) / ``num_epochs``.
    """
    check_lr_schedule(num_epochs, warmup_epochs, kind)
    main = LR_SCHEDULES.get(kind, "config.optimizer.schedule")(peak_lr)
    if warmup_epochs <= 0:
        return main
    warm = warmup_epochs / num_epochs
    return CompositeParamScheduler(
        [LinearParamScheduler(WARMUP_START_FACTOR * peak_lr, peak_lr), main],
        lengths=[warm, 1 - warm],
        interval_scaling=["rescaled", "rescaled"],
    )
