"""Generic layouts for any task: ImageFolder, a CSV file list and the EmotionNet pickle file list."""

import csv
import os
from typing import Dict, Tuple

import numpy as np
from iopath.common.file_io import g_pathmgr
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from vise_plugin.data.file_lists import Entries, read_pickle
from vise_plugin.errors import InputError
from vise_plugin.evaluation.datasets.label_table import encode_labels
from vise_plugin.evaluation.datasets.labelled_images import SPLITS, LabelledImages
from vise_plugin.evaluation.datasets.splits import fold_with_val
from vise_plugin.registry import BENCHMARK_DATASETS


def assemble(
    name: str,
    root: str,
    split_entries: Dict[str, Entries],
    multilabel: bool,
    val_fraction: float,
    seed: int,
    layout: Dict[str, str],
) -> LabelledImages:
    """One :class:`LabelledImages` from per-split entries; val is held out of train when absent."""
    paths, labels, parts = [], [], {}
    for split, entries in split_entries.items():
        parts[split] = np.arange(len(paths), len(paths) + len(entries))
        paths += [p for p, _ in entries]
        labels += [lab for _, lab in entries]
    try:
        targets, classes = encode_labels(labels, multilabel)
    except ValueError as e:
        raise InputError(f"{root}: {e}") from None
    if "val" in parts:
        fold = parts
    else:
        fold = fold_with_val(parts["train"], parts["test"], val_fraction, seed, targets)
        layout = {**layout, "val": f"{val_fraction:g} of train held out (seed {seed})"}
    metrics = ("map",) if multilabel else ("acc",)
    return LabelledImages(name, root, paths, targets, classes, [fold], metrics, layout=layout)


@BENCHMARK_DATASETS.register("image_folder")
def read_image_folder(root: str, val_fraction: float = 0.1, seed: int = 0, **_) -> LabelledImages:
    """``root/{train,val,test}/<class>/<image>`` (``val`` optional); classes from ``train``."""
    if not os.path.isdir(os.path.join(root, "train")) or not os.path.isdir(os.path.join(root, "test")):
        raise InputError(f"{root}: an ImageFolder benchmark needs train/<class>/ and test/<class>/ folders")
    classes, index = find_classes(os.path.join(root, "train"))
    split_entries = {}
    for split in SPLITS:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            continue
        try:
            samples = make_dataset(folder, index, IMG_EXTENSIONS)
        except FileNotFoundError as e:
            raise InputError(f"{folder}: {e}") from None
        split_entries[split] = [(os.path.relpath(p, root), [classes[c]]) for p, c in samples]
    sources = {split: os.path.join(root, split) for split in split_entries}
    return assemble(
        "image_folder", root, split_entries, False, val_fraction, seed, {"layout": "ImageFolder", **sources}
    )


def _split_file(root: str, files: Dict, split: str, suffix: str) -> str:
    name = (files or {}).get(split) or f"{split}{suffix}"
    return name if os.path.isabs(name) or "://" in name else os.path.join(root, name)


def read_csv(path: str, separator: str) -> Entries:
    with g_pathmgr.open(path, "r", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["path", "label"]:
        raise InputError(f"{path}:1: expected the header 'path,label'")
    entries = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise InputError(f"{path}:{line}: expected 'path,label' with both set, found {row!r}")
        entries.append((row[0].strip(), [n.strip() for n in row[1].split(separator) if n.strip()]))
    return entries


def _read_lists(root: str, files: Dict, suffix: str, reader) -> Tuple[Dict[str, Entries], Dict[str, str]]:
    """Each split's entries and the file that fed it; two splits read from one file fail in one line."""
    split_entries, sources = {}, {}
    for split in SPLITS:
        path = _split_file(root, files, split, suffix)
        if g_pathmgr.exists(path):
            same = [s for s, p in sources.items() if os.path.normpath(p) == os.path.normpath(path)]
            if same:
                raise InputError(
                    f"the {same[0]} and {split} splits are both read from {path}; point "
                    f"config.benchmark.dataset.files.{split} at its own file"
                )
            split_entries[split], sources[split] = reader(path), path
        elif split != "val" or (files or {}).get("val"):
            raise InputError(f"{path}: {split} file list not found (set config.benchmark.dataset.files.{split})")
    return split_entries, sources


@BENCHMARK_DATASETS.register("csv")
def read_csv_list(
    root: str,
    files: Dict = None,
    multilabel: bool = False,
    label_separator: str = ";",
    val_fraction: float = 0.1,
    seed: int = 0,
    **_,
) -> LabelledImages:
    """``{train,val,test}.csv`` with header ``path,label``; a multi-label cell joins names with ``label_separator``."""
    split_entries, sources = _read_lists(root, files, ".csv", lambda p: read_csv(p, label_separator))
    return assemble("csv", root, split_entries, multilabel, val_fraction, seed, {"layout": "CSV file list", **sources})


@BENCHMARK_DATASETS.register("pickle")
def read_pickle_list(
    root: str, files: Dict = None, multilabel: bool = False, val_fraction: float = 0.1, seed: int = 0, **_
) -> LabelledImages:
    """``{train,val,test}.pkl``, each a list of ``[relative_path, [labels]]`` (the EmotionNet release format)."""
    split_entries, sources = _read_lists(root, files, ".pkl", read_pickle)
    return assemble(
        "pickle", root, split_entries, multilabel, val_fraction, seed, {"layout": "pickle file list", **sources}
    )
