"""Two gloo ranks training from tar shards, as ``tools/run.py`` would under ``torchrun``.

``python -m torch.distributed.run --nproc_per_node=2 tests/shard_ranks.py <shard folder> <out dir>``:
each rank trains one epoch of ``demo/vise_tiny`` reading the shards through their index, then one
streamed (2 data-loader workers, batches of 9), and writes the label-store rows of the images it
trained on to ``<out dir>/<reader>_rank<r>.json``.
"""

import datetime
import json
import os
import sys

import torch.distributed as dist

from vise_plugin.config import compose_config
from vise_plugin.engine.pretrain import build_trainer

READERS = {
    "indexed": ["config.data.sources=[tar_shards]"],
    "streamed": [
        "config.data.dataset=streaming_shards",
        "config.data.num_workers=2",
        "config.data.batch_size_per_gpu=9",
    ],
}


class RowsRead:
    """The data loader's batches, still encoded (``decode_on=device``: the trainer's loader decodes them
    after), noting the row of every image."""

    def __init__(self, loader):
        self.loader = loader
        self.rows = []

    def __iter__(self):
        for batch in self.loader:
            self.rows += [int(name.split("#")[1]) for name in batch["input"]["where"]]
            yield batch


def main(shards: str, out: str) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    for reader, overrides in READERS.items():
        trainer = build_trainer(
            compose_config(
                [
                    "config=demo/vise_tiny",
                    f"config.data.shards={shards}",
                    f"config.run_dir={os.path.join(out, reader)}",
                    "config.optimizer.num_epochs=1",
                    "config.data.decode_on=device",
                    *overrides,
                ]
            )
        )
        read = trainer.loader.loader = RowsRead(trainer.loader.loader)  # under the DeviceDecodedLoader
        trainer.train()
        with open(os.path.join(out, f"{reader}_rank{rank}.json"), "w") as f:
            json.dump(read.rows, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
