"""Command-line entry points: ``tools/run.py`` and ``tools/generate_labels.py``."""

import sys
from typing import Callable, List, Optional

from omegaconf import DictConfig

from .config import compose_config
from .errors import UserError
from .launch.preemption import Preempted

PREEMPTED_EXIT_CODE = 3


def run_cli(job: Callable[[DictConfig], object], argv: Optional[List[str]] = None) -> int:
    """Composes the config from ``argv`` and runs ``job`` on it.

    A :class:`UserError` prints one line (``error: ...``) and returns 2; ``--debug`` shows the
    traceback instead. A run stopped by the preemption signal returns 3 after its checkpoint is saved.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        job(compose_config(argv))
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Preempted as e:
        print(f"stopped: {e}; run the same command again to resume", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0


def engine_function(name: str) -> Callable[[DictConfig], object]:
    """The function that runs ``config.engine=<name>`` on a composed root config."""
    from .benchmark import run_benchmark
    from .demo.pipeline import run_demo
    from .engine.pretrain import pretrain

    engines = {"pretrain": pretrain, "benchmark": run_benchmark, "demo": run_demo}
    if name not in engines:
        raise UserError(f"config.engine={name!r}: use one of {sorted(engines)}")
    return engines[name]


def run_engine(root_cfg: DictConfig) -> object:
    """Runs ``config.engine`` here, or submits it through submitit when ``config.slurm.use_slurm``."""
    function = engine_function(root_cfg.config.engine)
    if root_cfg.config.slurm.use_slurm:
        from .launch.submitit_launcher import submit_engine

        return submit_engine(root_cfg)
    return function(root_cfg)


def generate_labels(root_cfg: DictConfig) -> object:
    from .engine.run_folder import setup_logging
    from .labels.pipeline import run_label_job

    cfg = root_cfg.config.labels
    if not cfg.posts:
        raise UserError("no engagement file: set config.data.posts=<file.jsonl> (or config.labels.posts)")
    if not cfg.output:
        raise UserError("no output folder: set config.data.labels=<label store folder> (or config.labels.output)")
    setup_logging()
    return run_label_job(root_cfg.config)
