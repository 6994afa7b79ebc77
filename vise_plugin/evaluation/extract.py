"""Features of any image list at a chosen layer: ``tools/extract_features.py``."""

import json
import os
from typing import List, Tuple

import numpy as np
from iopath.common.file_io import g_pathmgr
from omegaconf import DictConfig
from torchvision.datasets.folder import IMG_EXTENSIONS

from vise_plugin.data.file_lists import read_pickle
from vise_plugin.engine.distributed import use_gpu
from vise_plugin.engine.run_folder import setup_logging
from vise_plugin.errors import ConfigError, InputError
from vise_plugin.evaluation.datasets import LabelledImages
from vise_plugin.evaluation.datasets.generic import read_csv
from vise_plugin.evaluation.datasets.screening import drop_unreadable
from vise_plugin.evaluation.features import extract_features
from vise_plugin.evaluation.protocols import eval_images
from vise_plugin.evaluation.runner import benchmark_trunk
from vise_plugin.process_state import keeps_process_state


def list_images(images: str, root: str = None) -> Tuple[str, List[str]]:
    """``(root, relative paths)`` of a folder (every image below it, sorted), a ``.txt`` list (one path
    per line), or a ``.csv`` (``path,label``) / ``.pkl`` (``[path, [labels]]``) file list."""
    if os.path.isdir(images):
        paths = sorted(
            os.path.relpath(os.path.join(d, f), images)
            for d, _, files in os.walk(images)
            for f in files
            if f.lower().endswith(IMG_EXTENSIONS)
        )
        return root or images, paths
    if not g_pathmgr.exists(images):
        raise InputError(f"{images}: image folder or list not found")
    root = root or os.path.dirname(os.path.abspath(images))
    if images.endswith(".csv"):
        return root, [p for p, _ in read_csv(images, ";")]
    if images.endswith(".pkl"):
        return root, [p for p, _ in read_pickle(images)]
    with g_pathmgr.open(images, "r") as f:
        return root, [line.strip() for line in f if line.strip()]


@keeps_process_state
def extract_job(root_cfg: DictConfig) -> str:
    """Writes ``features.npy`` ``(N, D)`` float32, ``images.txt`` (N paths, in order) and ``meta.json``."""
    cfg = root_cfg.config
    e = cfg.extract
    if not e.images or not e.output:
        raise ConfigError("set config.extract.images=<folder or list> and config.extract.output=<folder>")
    setup_logging()
    root, paths = list_images(e.images, e.root)
    if not paths:
        raise InputError(f"{e.images}: no images")
    data = LabelledImages("extract", root, paths, np.zeros(len(paths), np.int64), [], [])
    data.check_files()
    listed = len(paths)
    data = drop_unreadable(data, cfg.data.max_bad_image_fraction, cfg.benchmark.num_workers)
    paths = data.paths
    trunk = benchmark_trunk(cfg.model, cfg.seed)
    b = cfg.benchmark
    device = "cuda" if use_gpu(cfg.device) else "cpu"
    os.makedirs(e.output, exist_ok=True)
    dataset = eval_images(data, np.arange(len(paths)), b)
    feats = extract_features(
        trunk,
        dataset,
        b.batch_size,
        b.num_workers,
        device,
        e.layer,
        e.pool,
        out=os.path.join(e.output, "features.npy"),
        precision=cfg.speed.precision,
    )
    with open(os.path.join(e.output, "images.txt"), "w") as f:
        f.write("\n".join(paths) + "\n")
    meta = {
        "root": root,
        "num_images": len(paths),
        "shape": list(feats.shape),
        "layer": e.layer,
        "pool": e.pool,
        "trunk": cfg.model.trunk,
        "weights": cfg.model.weights,
        "image_size": b.image_size,
        "unreadable_skipped": listed - len(paths),
    }
    with open(os.path.join(e.output, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {e.output}/features.npy {tuple(feats.shape)} ({e.layer}, pool {e.pool})", flush=True)
    return e.output
