"""Pretraining checkpoints: what one holds, where it is written, and which one a restart reads.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` reads back::

    {"kind": "vise_pretraining", "trunk": "resnet50", "tasks": {"comments": 1000, ...},
     "model": state dict (keys "trunk.*", "head.*"), "optimizer": ..., "grad_scaler": ...,
     "position": {"iteration", "epoch", "batch_in_epoch"}, "rng": ..., "config": the resolved config}

Files in the run folder (VISSL's names): ``model_phase<N>.torch`` after epoch ``N``,
``model_iteration<N>.torch`` every ``period_iterations`` iterations, and ``checkpoint.torch``, a copy
of the newest, which is also written alone when the job is preempted. Each file is written under a
temporary name and renamed when complete, so a kill at any moment leaves only whole files.
"""

import logging
import os
import random
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from ..io_utils import copy_atomic, torch_save_atomic
from ..errors import InputError
from ..models.weights import PRETRAINING_CHECKPOINT, read_state_file

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = PRETRAINING_CHECKPOINT
CHECKPOINT_FILE = "checkpoint.torch"


def rng_state() -> Dict[str, Any]:
    """The random states of this process: torch (CPU and every GPU), Python and NumPy."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, *rest = state["python"]
    random.setstate((version, tuple(internal), *rest))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


class Checkpointer:
    """Writes and finds the checkpoints of one run folder.

    Args:
        run_dir: the run folder (any iopath location).
        enabled: False on every rank but the first, which alone writes.
    """

    def __init__(self, run_dir: str, enabled: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self.last_saved: Optional[Tuple[str, int]] = None  # (path, iteration) of the newest save or load

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def save(self, state: Dict[str, Any], name: Optional[str] = None) -> None:
        """Writes ``state`` to ``name`` (when given) and to ``checkpoint.torch``."""
        if not self.enabled:
            return
        g_pathmgr.mkdirs(self.run_dir)
        if name is None:
            torch_save_atomic(state, self.path(CHECKPOINT_FILE))
        else:
            torch_save_atomic(state, self.path(name))
            copy_atomic(self.path(name), self.path(CHECKPOINT_FILE))
        self.last_saved = (self.path(name or CHECKPOINT_FILE), state["position"]["iteration"])
        logger.info("saved checkpoint at iteration %d: %s", self.last_saved[1], self.last_saved[0])

    def candidates(self) -> List[str]:
        """``checkpoint.torch`` first, then the numbered checkpoints, newest first."""
        if not g_pathmgr.exists(self.run_dir):
            return []
        names = [n for n in g_pathmgr.ls(self.run_dir)
                 if n.startswith("model_") and n.endswith(".torch")]
        names.sort(key=lambda n: os.path.getmtime(self.path(n)) if "://" not in self.run_dir else n, reverse=True)
        first = [CHECKPOINT_FILE] if g_pathmgr.exists(self.path(CHECKPOINT_FILE)) else []
        return [self.path(n) for n in first + names]

    def latest(self) -> Optional[Dict[str, Any]]:
        """The newest checkpoint that loads, or None when the folder has none.

        A file that fails to load (a copy from an older version, a disk error) is reported and the
        next one is tried, so one bad file costs at most one checkpoint interval.
        """
        for path in self.candidates():
            try:
                state = read_state_file(path)
            except InputError as e:  # any unreadable file: fall back to an older one
                logger.warning("cannot read checkpoint (%s); trying an older one", e)
                continue
            if isinstance(state, dict) and state.get("kind") == CHECKPOINT_KIND:
                logger.info("resuming from %s (iteration %d)", path, state["position"]["iteration"])
                self.last_saved = (path, state["position"]["iteration"])
                return state
            logger.warning("%s is not a pretraining checkpoint of this project; trying an older one", path)
        return None
