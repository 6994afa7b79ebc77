#!/usr/bin/env python
"""python tools/extract_features.py config=benchmark/extract_r50 config.model.weights=<file>
       config.extract.images=<folder | list.txt | list.csv | list.pkl> config.extract.output=<folder>
       [config.extract.layer=res4] [config.extract.pool=none]

The same as vise-extract."""

import sys

from vise_plugin.cli import main_extract_features

if __name__ == "__main__":
    sys.exit(main_extract_features())
