#!/usr/bin/env python
"""python tools/write_shards.py config=<experiment> config.data.labels=<label store> config.shards.output=<folder>

The label store's posts (image bytes as stored + targets) as tar shards of about config.shards.shard_bytes,
resumable, on config.shards.num_workers processes or a submitit array (config.slurm.use_slurm=true);
the same as the vise-shards console script.
"""

import sys

from vise_plugin.cli import main_write_shards

if __name__ == "__main__":
    sys.exit(main_write_shards())
