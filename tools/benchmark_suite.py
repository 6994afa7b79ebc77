#!/usr/bin/env python
"""python tools/benchmark_suite.py config.model.weights=<file> [benchmarks=linear/cub_r50,finetune/cub_r50]
       [output=runs/suite] [config.benchmark.data_root=/datasets] [any config.* override]
   python tools/benchmark_suite.py watch=<pretraining run folder> [poll_seconds=60] [output=...] [...]

Runs a list of benchmark configs (default: the paper's four tasks, linear and fine-tuned) for one
checkpoint, each in <output>/<benchmark>, all appending to <output>/results.md. With watch=, it runs
the list for every model_phase<N>.torch the training run writes, into <output>/phase<N>, until the
run's last epoch. With config.slurm.use_slurm=true each benchmark is submitted as its own SLURM job.
A benchmark that fails is reported and the others still run; the exit code is 2 when any failed.
The same as the vise-suite console script.
"""

import sys

from vise_plugin.cli import main_benchmark_suite

if __name__ == "__main__":
    sys.exit(main_benchmark_suite())
