"""Pretraining checkpoints: what one holds, where it is written, and which one a restart reads.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` reads back::

    {"kind": "vise_pretraining", "trunk": "resnet50", "tasks": {"comments": 1000, ...},
     "model": state dict (keys "trunk.*", "head.*"), "optimizer": ..., "grad_scaler": ...,
     "position": {"iteration", "epoch", "batch_in_epoch", "samples_in_epoch", "loader_workers", "world_size",
                  "batch_size"},
     "rng": ..., "bad_images": {"seen", "skipped"}, "determinism": determinism_record(device),
     "config": the resolved config}

``samples_in_epoch`` is the position a resume with another number of ranks or batch size goes on
from; ``determinism`` what bitwise-equal weights depend on (:mod:`vise_plugin.engine.determinism`).
Older checkpoints lack the keys after ``batch_in_epoch``, ``bad_images`` and ``determinism``, and still load.

Files in the run folder (VISSL's names): ``model_phase<N>.torch`` after epoch ``N``,
``model_iteration<N>.torch`` every ``period_iterations`` iterations, and ``checkpoint.torch``, a copy
of the newest, which is also written alone when the job is preempted. Each file is written under a
temporary name and renamed when complete, so a kill at any moment leaves only whole files.
"""

import logging
import os
import random
import re
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.io_utils import copy_atomic, move, torch_save_atomic
from vise_plugin.models.weight_formats import PRETRAINING_CHECKPOINT
from vise_plugin.models.weights import read_state_file

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


_NUMBERED = re.compile(r"model_(phase|iteration)(\d+)\.torch")


class CheckpointsUnreadable(InputError):
    """A run folder holds checkpoint files and none of them loads: resuming is impossible, and
    starting over must be asked for (``config.resume=false``)."""


def numbered_position(name: str, iterations_per_epoch: int) -> Optional[int]:
    """The iteration a checkpoint file name stands for: ``model_iteration<N>.torch`` is iteration N,
    ``model_phase<N>.torch`` the end of epoch N (``(N + 1) * iterations_per_epoch``); None for other names."""
    match = _NUMBERED.fullmatch(name)
    if match is None:
        return None
    number = int(match.group(2))
    return number if match.group(1) == "iteration" else (number + 1) * iterations_per_epoch


class Checkpointer:
    """Writes and finds the checkpoints of one run folder.

    Args:
        run_dir: the run folder (any iopath location).
        enabled: False on every rank but the first, which alone writes (and sets files aside).
        read_attempts: tries per file before an I/O error makes it count as unreadable.
        retry_delay_s: wait before the second try, doubled before each further one.
    """

    def __init__(self, run_dir: str, enabled: bool = True, read_attempts: int = 3, retry_delay_s: float = 2.0):
        self.run_dir = run_dir
        self.enabled = enabled
        self.read_attempts = max(int(read_attempts), 1)
        self.retry_delay_s = retry_delay_s
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

    def numbered(self, iterations_per_epoch: int) -> List[Tuple[str, int]]:
        """``(path, iteration)`` of the ``model_phase<N>`` / ``model_iteration<N>`` files, newest first,
        by the number in the name (the same order on local disk and remote storage)."""
        if not g_pathmgr.exists(self.run_dir):
            return []
        found = [(self.path(n), numbered_position(n, iterations_per_epoch)) for n in g_pathmgr.ls(self.run_dir)]
        return sorted([(p, it) for p, it in found if it is not None], key=lambda f: f[1], reverse=True)

    def existing(self, iterations_per_epoch: int = 1) -> List[str]:
        """Every checkpoint file of the run folder: ``checkpoint.torch`` first, then newest first."""
        first = [self.path(CHECKPOINT_FILE)] if g_pathmgr.exists(self.path(CHECKPOINT_FILE)) else []
        return first + [p for p, _ in self.numbered(iterations_per_epoch)]

    def read(self, path: str) -> Dict[str, Any]:
        """One checkpoint of this project (I/O errors retried); :class:`InputError` otherwise."""
        state = read_state_file(path, self.read_attempts, self.retry_delay_s)
        if not (isinstance(state, dict) and state.get("kind") == CHECKPOINT_KIND):
            raise InputError(f"{path}: not a pretraining checkpoint of this project")
        return state

    def latest(self, iterations_per_epoch: int = 1) -> Optional[Tuple[str, Dict[str, Any]]]:
        """``(path, state)`` of the newest checkpoint that loads; None when the run folder has none.

        ``checkpoint.torch`` is read first; a numbered file whose name says it is newer (a kill
        between writing it and copying it) is preferred when it loads. A file that fails to load is
        reported and an older one is tried, so one damaged file costs at most one checkpoint
        interval; the damaged files that a resumed run would later overwrite are moved aside (see
        :meth:`set_aside`). Raises :class:`CheckpointsUnreadable` when files exist and none loads.
        """
        failures: List[Tuple[str, str]] = []

        def attempt(path: str) -> Optional[Dict[str, Any]]:
            try:
                return self.read(path)
            except InputError as e:
                logger.warning("cannot read checkpoint (%s); trying an older one", e)
                failures.append((path, str(e)))
                return None

        best: Optional[Tuple[str, Dict[str, Any]]] = None
        if g_pathmgr.exists(self.path(CHECKPOINT_FILE)):
            state = attempt(self.path(CHECKPOINT_FILE))
            best = None if state is None else (self.path(CHECKPOINT_FILE), state)
        for path, iteration in self.numbered(iterations_per_epoch):
            if best is not None and iteration <= best[1]["position"]["iteration"]:
                break
            state = attempt(path)
            if state is not None and (
                best is None or state["position"]["iteration"] > best[1]["position"]["iteration"]
            ):
                best = (path, state)
                break
        if best is None and failures:
            names = ", ".join(os.path.basename(p) for p, _ in failures)
            raise CheckpointsUnreadable(
                f"{self.run_dir}: none of its checkpoint files loads ({names}; first: {failures[0][1]}); "
                "nothing was overwritten. Fix the storage and run again to resume, or start over with "
                "config.resume=false"
            )
        if failures:
            self.set_aside([p for p, _ in failures], "unreadable when resuming")
        if best is not None:
            logger.info("resuming from %s (iteration %d)", best[0], best[1]["position"]["iteration"])
            self.last_saved = (best[0], best[1]["position"]["iteration"])
        return best

    def set_aside(self, paths: List[str], why: str) -> Optional[str]:
        """Moves ``paths`` into ``<run_dir>/set_aside_<UTC time>/`` (first rank only), so that a run
        which did not resume from them never overwrites them; returns that folder."""
        if not self.enabled or not paths:
            return None
        folder = self.path("set_aside_" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
        g_pathmgr.mkdirs(folder)
        for path in paths:
            move(path, os.path.join(folder, os.path.basename(path)))
        logger.warning(
            "moved %d checkpoint file(s) (%s) to %s: %s",
            len(paths),
            ", ".join(os.path.basename(p) for p in paths),
            folder,
            why,
        )
        return folder
