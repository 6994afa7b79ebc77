"""Progress logging: a log line and a ``stdout.json`` line every ``log_freq`` iterations."""

import json
import logging
import resource
import time
from typing import Optional

import torch
from classy_vision.generic.distributed_util import is_primary
from classy_vision.hooks import ClassyHook

logger = logging.getLogger(__name__)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated when on GPU, otherwise the process's peak RSS, in MiB."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TrainLogHook(ClassyHook):
    """Logs iteration, loss, each task's loss, lr, images/s, ETA and peak memory.

    Args:
        log_freq: iterations between lines.
        json_path: file that receives one JSON object per logged iteration (VISSL's stdout.json),
            or None.
    """

    on_start = ClassyHook._noop
    on_phase_end = ClassyHook._noop
    on_end = ClassyHook._noop

    def __init__(self, log_freq: int = 10, json_path: Optional[str] = None):
        super().__init__()
        self.log_freq = log_freq
        self.json_path = json_path
        self._last_time = None
        self._last_iteration = 0

    def on_phase_start(self, task) -> None:
        self._last_time = time.perf_counter()
        self._last_iteration = task.num_updates // task.get_global_batchsize()

    def on_step(self, task) -> None:
        if not task.train or not is_primary():
            return
        batch = task.get_global_batchsize()
        iteration = task.num_updates // batch
        if iteration % self.log_freq != 0:
            return
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        iters = iteration - self._last_iteration
        total = task.get_total_training_phases() * task.num_batches_per_phase
        record = {
            "iteration": iteration,
            "phase": task.train_phase_idx,
            "loss": round(float(task.last_batch.loss), 5),
            **{f"loss_{k}": round(float(v), 5) for k, v in task.base_loss.last_values.items()},
            "lr": task.optimizer.param_groups[0]["lr"],
            "images_per_sec": round(iters * batch / elapsed, 1),
            "eta_seconds": round(max(total - iteration, 0) * elapsed / max(iters, 1)),
            "peak_mem_mb": round(peak_memory_mb(), 1),
        }
        self._last_time, self._last_iteration = now, iteration
        tasks = " ".join(f"{k}={record[k]:.4f}" for k in record if k.startswith("loss_"))
        logger.info(
            "it %d/%d  loss %.4f (%s)  lr %.4g  %.1f img/s  eta %s  mem %.0fMB",
            iteration, total, record["loss"], tasks, record["lr"], record["images_per_sec"],
            _hms(record["eta_seconds"]), record["peak_mem_mb"],
        )
        if self.json_path:
            with open(self.json_path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
