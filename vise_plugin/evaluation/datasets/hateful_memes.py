"""Hateful Memes, Phase 1 (Kiela et al. 2020): meme image + meme text, hateful or not."""

import json
import os

import numpy as np
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.evaluation.datasets.labelled_images import LabelledImages
from vise_plugin.evaluation.datasets.splits import fold_with_val
from vise_plugin.registry import BENCHMARK_DATASETS


def _read_jsonl(path: str):
    rows = []
    with g_pathmgr.open(path, "r") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append((str(row["img"]), int(row["label"]), str(row["text"])))
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f'{path}:{line_no}: expected {{"img", "label", "text"}} ({e})') from None
    return rows


@BENCHMARK_DATASETS.register("hateful_memes")
def read_hateful_memes(root: str, val_fraction: float = 0.1, seed: int = 0, **_) -> LabelledImages:
    """``root/img/<id>.png`` with ``root/train.jsonl`` and ``root/dev.jsonl`` (``dev_seen.jsonl`` also
    read); each line ``{"id", "img", "label", "text"}``. Model selection uses a seeded share of train;
    ROC AUC (macro) and accuracy are reported on dev (Sec. 4.3)."""
    dev = next((p for p in ("dev.jsonl", "dev_seen.jsonl") if g_pathmgr.exists(os.path.join(root, p))), None)
    if not g_pathmgr.exists(os.path.join(root, "train.jsonl")) or dev is None:
        raise InputError(f"{root}: Hateful Memes layout needs train.jsonl, dev.jsonl (or dev_seen.jsonl) and img/")
    train, test = _read_jsonl(os.path.join(root, "train.jsonl")), _read_jsonl(os.path.join(root, dev))
    rows = train + test
    targets = np.array([r[1] for r in rows], np.int64)
    fold = fold_with_val(np.arange(len(train)), np.arange(len(train), len(rows)), val_fraction, seed, targets)
    return LabelledImages(
        "hateful_memes",
        root,
        [r[0] for r in rows],
        targets,
        ["not hateful", "hateful"],
        [fold],
        metrics=("roc_auc", "acc"),
        texts=[r[2] for r in rows],
        report_split=dev.removesuffix(".jsonl"),
        layout={
            "layout": f"img/ + train.jsonl + {dev}",
            "train": os.path.join(root, "train.jsonl"),
            "val": f"{val_fraction:g} of train held out (seed {seed})",
            "test": os.path.join(root, dev),
        },
    )
