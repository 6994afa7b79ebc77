"""``python -m vise_plugin.run config=<experiment> [config.a.b=v ...] [+config.x=v ...] [--debug]``"""

import sys

from vise_plugin.cli import main_run

if __name__ == "__main__":
    sys.exit(main_run())
