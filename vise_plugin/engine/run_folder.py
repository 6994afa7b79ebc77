"""The run folder: ``train_config.yaml``, ``log.txt`` and the logging set-up."""

import logging
import os
import sys

from omegaconf import DictConfig

from vise_plugin.config import to_yaml

LOG_FORMAT = "%(levelname)s %(asctime)s %(name)s: %(message)s"


def setup_logging(run_dir: str = None, primary: bool = True) -> None:
    """INFO to stdout (primary rank only) and, when ``run_dir`` is given, to ``run_dir/log.txt``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()  # a suite sets up one run folder after another in one process
    root.setLevel(logging.INFO if primary else logging.WARNING)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    root.addHandler(console)
    if run_dir and primary:
        os.makedirs(run_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(run_dir, "log.txt"))
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(file_handler)


def write_resolved_config(cfg: DictConfig, run_dir: str) -> str:
    """Writes the fully resolved config to ``run_dir/train_config.yaml``; returns the path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "train_config.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    return path
