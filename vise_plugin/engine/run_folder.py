"""The run folder: ``train_config.yaml``, ``log.txt`` and the logging set-up."""

import logging
import os
import sys

from omegaconf import DictConfig

from vise_plugin.config import to_yaml

LOG_FORMAT = "%(levelname)s %(asctime)s %(name)s: %(message)s"
_OURS = "_vise_run_log"  # marks the handlers setup_logging installs


def setup_logging(run_dir: str = None, primary: bool = True) -> None:
    """INFO to stdout (primary rank only) and, when ``run_dir`` is given, to ``run_dir/log.txt``, in place
    of the root logger's handlers. Handlers an earlier call installed are closed (a suite sets up one run
    folder after another in one process); the caller's own are only taken off, and the entry points put
    them back when they return (:func:`vise_plugin.process_state.keeps_process_state`)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if getattr(handler, _OURS, False):
            handler.close()
    root.setLevel(logging.INFO if primary else logging.WARNING)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    handlers = [console]
    if run_dir and primary:
        os.makedirs(run_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(run_dir, "log.txt")))
        handlers[-1].setFormatter(logging.Formatter(LOG_FORMAT))
    for handler in handlers:
        setattr(handler, _OURS, True)
        root.addHandler(handler)


def write_resolved_config(cfg: DictConfig, run_dir: str) -> str:
    """Writes the fully resolved config to ``run_dir/train_config.yaml``; returns the path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "train_config.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    return path
