#!/usr/bin/env python
"""python tools/run.py config=<experiment> [config.a.b=v ...] [+config.x=v ...] [--debug]

The same as the vise-run console script and python -m vise_plugin.run."""

import sys

from vise_plugin.cli import main_run

if __name__ == "__main__":
    sys.exit(main_run())
