"""Damage injected into a run: a hook that turns a head NaN, a loader whose batch has no readable
image, and (run as a script under ``torchrun``) a two-rank run where only rank 1 is damaged.

``python -m torch.distributed.run --nproc_per_node=2 tests/poison.py <mode>[,<mode>...] <label store> <run dir>``
writes ``<run dir>/rank<r>.txt`` (``<run dir>/<mode>/rank<r>.txt`` for the damaged modes) on each rank: the
error when it stopped on a non-finite loss, otherwise ``finished at iteration <n>, weights <sum of all
weights>``. Modes: ``clean`` (no damage, through the pretraining engine), ``nan`` and ``unreadable`` (rank 1's
first batch of each epoch, the run's first before it has read any, and its third), and ``over_budget`` (the
same, with ``max_bad_image_fraction=0.1``: too many for the ranks together, not yet for rank 1 alone).
"""

import datetime
import os
import sys

import torch
import torch.distributed as dist

from vise_plugin.config import compose_config
from vise_plugin.data.bad_images import SKIPPED
from vise_plugin.engine.hooks import HookBase
from vise_plugin.engine.pretrain import build_trainer, pretrain
from vise_plugin.errors import InputError, NonFiniteLossError


class PoisonHead(HookBase):
    """Sets the comments head to NaN after iteration ``at``."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, trainer) -> None:
        if trainer.iteration == self.at:
            with torch.no_grad():
                trainer.base_model.head.fcs["comments"].weight.fill_(float("nan"))


class UnreadableBatch:
    """The loader's batches, but in each epoch the batches ``at`` have no readable image."""

    def __init__(self, loader, at):
        self.loader = loader
        self.at = set(at)

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            yield {SKIPPED: ["unreadable.jpg"] * len(batch["input"])} if i in self.at else batch


def weights_line(trainer) -> str:
    weights = sum(float(p.detach().double().sum()) for p in trainer.base_model.parameters())
    return f"finished at iteration {trainer.iteration}, weights {weights:.12e}"


def _write(run_dir: str, rank: int, result: str) -> None:
    with open(os.path.join(run_dir, f"rank{rank}.txt"), "w") as f:
        f.write(result)


def _config(labels: str, run_dir: str, *extra: str):
    return compose_config(
        [
            "config=demo/vise_tiny",
            f"config.data.labels={labels}",
            f"config.run_dir={run_dir}",
            "config.logging.log_freq=4",
            *extra,
        ]
    )


def _poisoned(mode: str, labels: str, run_dir: str, rank: int) -> None:
    """One damaged run inside the process group; its outcome in ``<run_dir>/rank<r>.txt``."""
    os.makedirs(run_dir, exist_ok=True)
    trainer = build_trainer(
        _config(labels, run_dir, *(["config.data.max_bad_image_fraction=0.1"] if mode == "over_budget" else []))
    )
    if rank == 1 and mode == "nan":
        trainer.hooks.insert(0, PoisonHead(at=3))  # rank 1's loss is NaN at iteration 4, a checked one
    if rank == 1 and mode in (
        "unreadable",
        "over_budget",
    ):  # at 0 no batch has been read yet on this rank; at 2 one has
        trainer.loader = UnreadableBatch(trainer.loader, at=(0, 2))
    try:
        trainer.train()
        result = weights_line(trainer)
    except NonFiniteLossError as e:
        result = str(e)
    except InputError as e:
        result = f"stopped at iteration {trainer.iteration}: {e}"
    _write(run_dir, rank, result)


def main(modes: str, labels: str, run_dir: str) -> None:
    """``modes``: ``clean``, or damaged modes separated by commas, run one after the other in one
    process group, each in ``<run_dir>/<mode>``."""
    os.makedirs(run_dir, exist_ok=True)
    if modes == "clean":  # the engine function tools/run.py calls, which joins and leaves the process group
        trainer = pretrain(_config(labels, run_dir))
        _write(run_dir, int(os.environ["RANK"]), weights_line(trainer))
        return
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))  # a rank left waiting fails soon
    for mode in modes.split(","):
        _poisoned(mode, labels, os.path.join(run_dir, mode), dist.get_rank())
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
