#!/usr/bin/env python
"""python tools/benchmark_suite.py config.model.weights=<file> [benchmarks=linear/cub_r50,finetune/cub_r50]
       [output=runs/suite] [config.benchmark.data_root=/datasets] [any config.* override]

Runs a list of benchmark configs (default: the paper's four tasks, linear and fine-tuned) for one
checkpoint, each in <output>/<benchmark>, all appending to <output>/results.md. A benchmark that fails
is reported and the others still run; the exit code is 2 when any failed.
"""

import sys

from vise_plugin.benchmark.suite import run_suite

if __name__ == "__main__":
    sys.exit(run_suite(sys.argv[1:]))
