#!/usr/bin/env python
"""python tools/generate_labels.py config=<path under configs/> [config.data.posts=...] [--debug]"""

import sys

from vise_plugin.cli import generate_labels, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(generate_labels))
