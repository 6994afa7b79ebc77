#!/usr/bin/env python
"""python tools/generate_labels.py config=<experiment> [config.data.posts=...] [--debug]

The same as vise-labels and python -m vise_plugin.generate_labels."""

import sys

from vise_plugin.cli import main_generate_labels

if __name__ == "__main__":
    sys.exit(main_generate_labels())
