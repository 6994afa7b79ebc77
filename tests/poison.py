"""A hook that damages the model mid-run, and (run as a script under ``torchrun``) a two-rank run
where only one rank's loss turns NaN.

``python -m torch.distributed.run --nproc_per_node=2 tests/poison.py <label store> <run dir>``
prints ``rank <r>: <error>`` for each rank that stopped on the non-finite loss.
"""

import datetime
import os
import sys

import torch
import torch.distributed as dist

from vise_plugin.config import compose_config
from vise_plugin.engine.pretrain import build_trainer
from vise_plugin.errors import NonFiniteLossError
from vise_plugin.hooks import HookBase


class PoisonHead(HookBase):
    """Sets the comments head to NaN after iteration ``at``."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, trainer) -> None:
        if trainer.iteration == self.at:
            with torch.no_grad():
                trainer.base_model.head.fcs["comments"].weight.fill_(float("nan"))


def main(labels: str, run_dir: str) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))  # a rank left waiting fails soon
    rank = dist.get_rank()
    os.makedirs(run_dir, exist_ok=True)
    trainer = build_trainer(compose_config(["config=demo/vise_tiny", f"config.data.labels={labels}",
                                            f"config.run_dir={run_dir}", "config.logging.log_freq=4"]))
    if rank == 1:
        trainer.hooks.insert(0, PoisonHead(at=3))  # rank 1's loss is NaN at iteration 4, a checked one
    try:
        trainer.train()
        print(f"rank {rank}: finished", flush=True)
    except NonFiniteLossError as e:
        print(f"rank {rank}: {e}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
