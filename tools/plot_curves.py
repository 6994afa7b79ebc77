#!/usr/bin/env python
"""python tools/plot_curves.py runs/vise_r50_1m [runs/other ...] [--labels a b] [--output curves.png]

Training curves of one or more pretraining run folders on one chart; the same as vise-curves."""

import sys

from vise_plugin.cli import main_plot_curves

if __name__ == "__main__":
    sys.exit(main_plot_curves())
