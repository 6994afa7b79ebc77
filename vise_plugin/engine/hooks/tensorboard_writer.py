"""TensorBoard scalars of the training log (VISSL's ``tb_logs``), when the ``tensorboard`` package is installed."""

import logging
from typing import Dict, Optional

logger = logging.getLogger(__name__)

SCALARS = ("loss", "lr", "images_per_sec")


class TensorboardWriter:
    """Writes each logged record's loss, per-task losses, lr and images/s as TensorBoard scalars.

    Args:
        log_dir: the event files' folder (``<run_dir>/tb_logs``).

    :meth:`open` is called with the iteration training starts from; on a resume, events at or past
    it (written before the interruption) are purged, so each iteration appears once.
    """

    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self._writer = None

    @staticmethod
    def available() -> bool:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return False
        return True

    def open(self, start_iteration: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(self.log_dir, purge_step=start_iteration or None)

    def write(self, record: Dict[str, float]) -> None:
        step = record["iteration"]
        for key, value in record.items():
            if key in SCALARS or key.startswith("loss_"):
                self._writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def tensorboard_writer(log_dir: str, wanted: bool) -> Optional[TensorboardWriter]:
    """A writer for ``log_dir`` when ``wanted`` (``config.logging.tensorboard``) and installed; None
    otherwise, with one log line saying how to get it."""
    if not wanted:
        return None
    if not TensorboardWriter.available():
        logger.info(
            "TensorBoard scalars are off: the tensorboard package is not installed "
            '(pip install -e ".[tensorboard]"); training_curves.png is still drawn'
        )
        return None
    return TensorboardWriter(log_dir)
