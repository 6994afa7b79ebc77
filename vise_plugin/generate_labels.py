"""``python -m vise_plugin.generate_labels config=<experiment> [config.data.posts=...] [--debug]``"""

import sys

from vise_plugin.cli import main_generate_labels

if __name__ == "__main__":
    sys.exit(main_generate_labels())
