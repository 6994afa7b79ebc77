"""Command-line entry points: ``tools/run.py`` and ``tools/generate_labels.py``."""

import sys
from typing import Callable, List, Optional

from omegaconf import DictConfig

from .config import compose_config
from .errors import UserError


def run_cli(job: Callable[[DictConfig], object], argv: Optional[List[str]] = None) -> int:
    """Composes the config from ``argv`` and runs ``job`` on it.

    A :class:`UserError` prints one line (``error: ...``) and returns 2; ``--debug`` shows the
    traceback instead.
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
    return 0


def run_engine(root_cfg: DictConfig) -> object:
    """Dispatches on ``config.engine``."""
    from .benchmark import run_benchmark
    from .demo.pipeline import run_demo
    from .engine.pretrain import pretrain

    engines = {"pretrain": pretrain, "benchmark": run_benchmark, "demo": run_demo}
    engine = root_cfg.config.engine
    if engine not in engines:
        raise UserError(f"config.engine={engine!r}: use one of {sorted(engines)}")
    return engines[engine](root_cfg)


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
