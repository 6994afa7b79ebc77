#!/usr/bin/env python
"""python tools/reddit_urls.py RS_2023-01.zst [more RS files or globs] --output urls.parquet [--no-nsfw]

The same as python -m vise_plugin.reddit.urls."""

import sys

from vise_plugin.reddit.urls import main

if __name__ == "__main__":
    sys.exit(main())
