"""Learning-rate schedule as a function of training progress (fvcore schedulers)."""

from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

from ..errors import ConfigError

WARMUP_START_FACTOR = 0.1


def lr_schedule(peak_lr: float, num_epochs: float, warmup_epochs: float, kind: str = "cosine") -> ParamScheduler:
    """Linear warm-up from ``0.1 * peak_lr`` over ``warmup_epochs``, then cosine to 0 or constant.

    The trainer evaluates it before every step at ``iteration / max_iterations``.
    """
    if kind == "cosine":
        main = CosineParamScheduler(peak_lr, 0.0)
    elif kind == "constant":
        main = ConstantParamScheduler(peak_lr)
    else:
        raise ConfigError(f"config.optimizer.schedule={kind!r}: use 'cosine' or 'constant'")
    if warmup_epochs <= 0:
        schedule = main
    elif warmup_epochs >= num_epochs:
        raise ConfigError(f"config.optimizer.warmup_epochs={warmup_epochs} must be below num_epochs={num_epochs}")
    else:
        warm = warmup_epochs / num_epochs
        schedule = CompositeParamScheduler(
            [LinearParamScheduler(WARMUP_START_FACTOR * peak_lr, peak_lr), main],
            lengths=[warm, 1 - warm],
            interval_scaling=["rescaled", "rescaled"],
        )
    return schedule
