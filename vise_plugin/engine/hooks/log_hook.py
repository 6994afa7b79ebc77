"""Progress logging: a log line and a ``stdout.json`` line every ``log_freq`` iterations."""

import json
import logging
import resource
import time
from typing import Optional, Sequence

import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.bad_images import BadImageBudget
from vise_plugin.engine.hooks.base import HookBase

logger = logging.getLogger(__name__)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated when on GPU, otherwise the process's peak RSS, in MiB."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TrainLogHook(HookBase):
    """Logs iteration, loss, each task's loss, lr, images/s, ETA and peak memory (first rank only).

    Reading the loss waits for the GPU, so it happens only on logged iterations, which are also
    where a non-finite loss is noticed (:meth:`Trainer.check_finite`).

    Args:
        log_freq: iterations between lines.
        json_path: file that receives one JSON object per logged iteration (VISSL's stdout.json),
            or None. On a resume, lines past the resumed iteration are dropped, so each iteration
            appears once.
        enabled: False on every rank but the first.
        writers: more sinks for each logged record (e.g. :class:`TensorboardWriter`): ``open(start
            iteration)`` before training, ``write(record)``, ``close()`` at the end.
        bad_images: the run's :class:`BadImageBudget` (its ``skipped`` and ``seen`` counts), named in the
            line of an iteration logged before any image was read; None: counts of 0.
    """

    def __init__(
        self,
        log_freq: int = 10,
        json_path: Optional[str] = None,
        enabled: bool = True,
        writers: Sequence = (),
        bad_images: Optional[BadImageBudget] = None,
    ):
        self.log_freq = max(int(log_freq), 1)
        self.json_path = json_path
        self.enabled = enabled
        self.writers = list(writers) if enabled else []
        self.bad_images = bad_images
        self._last_time = 0.0
        self._last_iteration = 0

    def before_train(self, trainer) -> None:
        self._last_time = time.perf_counter()
        self._last_iteration = trainer.iteration
        if self.enabled and self.json_path and g_pathmgr.exists(self.json_path):
            with g_pathmgr.open(self.json_path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["iteration"] <= trainer.iteration]
            with g_pathmgr.open(self.json_path, "w") as f:
                f.writelines(kept)
        for writer in self.writers:
            writer.open(trainer.iteration)

    def after_step(self, trainer) -> None:
        if trainer.iteration % self.log_freq and trainer.iteration != trainer.max_iterations:
            return
        trainer.check_finite()  # on every rank, at the same iterations
        if not self.enabled:
            return
        if trainer.last_loss is None:  # every image this rank read so far was unreadable: no loss to show yet
            logger.info(
                "it %d/%d  no batch trained yet (%d of %d images unreadable so far)",
                trainer.iteration,
                trainer.max_iterations,
                getattr(self.bad_images, "skipped", 0),
                getattr(self.bad_images, "seen", 0),
            )
            return
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        iters = trainer.iteration - self._last_iteration
        record = {
            "iteration": trainer.iteration,
            "epoch": trainer.epoch,
            "loss": round(float(trainer.last_loss), 5),
            **{f"loss_{k}": round(float(v), 5) for k, v in getattr(trainer.loss, "last_values", {}).items()},
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "images_per_sec": round(iters * trainer.global_batch_size / elapsed, 1),
            "eta_seconds": round(max(trainer.max_iterations - trainer.iteration, 0) * elapsed / max(iters, 1)),
            "peak_mem_mb": round(peak_memory_mb(), 1),
        }
        self._last_time, self._last_iteration = now, trainer.iteration
        tasks = " ".join(f"{k}={record[k]:.4f}" for k in record if k.startswith("loss_"))
        logger.info(
            "it %d/%d  loss %.4f (%s)  lr %.4g  %.1f img/s  eta %s  mem %.0fMB",
            trainer.iteration,
            trainer.max_iterations,
            record["loss"],
            tasks,
            record["lr"],
            record["images_per_sec"],
            _hms(record["eta_seconds"]),
            record["peak_mem_mb"],
        )
        if self.json_path:
            with g_pathmgr.open(self.json_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        for writer in self.writers:
            writer.write(record)

    def after_train(self, trainer) -> None:
        for writer in self.writers:
            writer.close()

    def on_preempt(self, trainer) -> None:
        self.after_train(trainer)


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
