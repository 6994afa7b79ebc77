#!/usr/bin/env python
"""python tools/run.py config=<path under configs/> [config.a.b=v ...] [+config.x=v ...] [--debug]"""

import sys

from vise_plugin.cli import run_cli, run_engine

if __name__ == "__main__":
    sys.exit(run_cli(run_engine))
