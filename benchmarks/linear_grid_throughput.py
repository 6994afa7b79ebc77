"""Linear protocol on a memory-mapped feature cache: the whole grid in one pass versus one pass per
classifier, the way a per-setting sweep runs it.

    python benchmarks/linear_grid_throughput.py [--images 50000] [--dim 2048] [--epochs 2]

Synthetic ResNet-50-sized features (``--images`` x ``--dim`` float32) are written to a ``.npy`` file
and read memory-mapped. The grid is the default 4 learning rates x 3 weight decays. Prints the
seconds of each path and ``ratio: <sequential seconds / grid seconds>``.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vise_plugin.evaluation.linear_classifiers import FeatureRows, LinearClassifierGrid  # noqa: E402

LRS, WDS = [0.001, 0.01, 0.1, 1.0], [0.0, 1e-4, 1e-3]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "features.npy")
        np.save(path, rng.normal(size=(args.images, args.dim)).astype(np.float32))
        feats = np.load(path, mmap_mode="r")
        targets = rng.integers(0, args.classes, args.images)
        train = np.arange(args.images)
        rows = FeatureRows(feats)
        rows.fit_standardisation(train)

        start = time.perf_counter()
        LinearClassifierGrid(args.dim, args.classes, LRS, WDS).fit(rows, targets, train, args.epochs, 256)
        grid_s = time.perf_counter() - start

        start = time.perf_counter()
        for lr in LRS:
            for wd in WDS:
                LinearClassifierGrid(args.dim, args.classes, [lr], [wd]).fit(rows, targets, train, args.epochs, 256)
        sequential_s = time.perf_counter() - start
    print(
        f"{args.images} x {args.dim} memory-mapped features, {len(LRS) * len(WDS)} classifiers, "
        f"{args.epochs} epochs, {torch.get_num_threads()} threads"
    )
    print(f"one pass for the grid:      {grid_s:7.1f} s")
    print(f"one pass per classifier:    {sequential_s:7.1f} s")
    print(f"ratio: {sequential_s / grid_s:.2f}")


if __name__ == "__main__":
    main()
