#!/usr/bin/env python
"""Training curves of one or more pretraining run folders on one chart.

    python tools/plot_curves.py runs/vise_r50_1m [runs/other ...] [--labels a b] [--output curves.png]
"""

import argparse
import sys

from vise_plugin.engine.training_curves import plot_training_curves
from vise_plugin.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run folders holding stdout.json")
    parser.add_argument("--labels", nargs="*", default=[], help="one name per run (default: the folder names)")
    parser.add_argument("--output", default="training_curves.png")
    args = parser.parse_args()
    try:
        print(plot_training_curves(args.run_dirs, args.output, args.labels))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
