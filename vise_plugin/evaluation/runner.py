"""The benchmark engine: ``tools/run.py config=benchmark/<linear|finetune>/<task>_r50``."""

import logging
import os
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig

from vise_plugin.engine.distributed import use_gpu
from vise_plugin.engine.run_folder import setup_logging, write_resolved_config
from vise_plugin.errors import ConfigError
from vise_plugin.evaluation.cam import class_activation_maps, save_cam_grid
from vise_plugin.evaluation.datasets import LabelledImages, check_benchmark_dataset, read_benchmark_dataset
from vise_plugin.evaluation.datasets.screening import drop_unreadable
from vise_plugin.evaluation.protocols import eval_images, linear_grid
from vise_plugin.evaluation.results import append_metrics, append_table_row, format_result, summarize, write_sweep_table
from vise_plugin.feature_cache import FeatureCache
from vise_plugin.models import build_trunk, load_trunk_weights
from vise_plugin.process_state import keeps_process_state, seeded
from vise_plugin.registry import ENGINES, PROTOCOLS, TRUNKS
from vise_plugin.text.text_features import text_features

logger = logging.getLogger(__name__)


def benchmark_trunk(model_cfg: DictConfig, seed: int = 0) -> nn.Module:
    """``config.model.trunk`` with ``config.model.weights`` loaded (random init, seeded, when null)."""
    with seeded(seed):
        trunk = build_trunk(model_cfg.trunk)
    if model_cfg.weights:
        load_trunk_weights(trunk, model_cfg.weights)
    return trunk


def write_cam_grid(
    path: str, trunk: nn.Module, data: LabelledImages, fold_result: Dict, fold: Dict, b: DictConfig, device: str
) -> Optional[str]:
    """CAM grid of ``b.cam.num_images`` test images of the fold, evenly spaced through the test split
    (so several classes show), with the fold's chosen classifier."""
    n = min(b.cam.num_images, len(fold["test"]))
    if n <= 0:
        return None
    rows = np.unique(np.linspace(0, len(fold["test"]) - 1, n).round().astype(np.int64))
    picked = fold["test"][rows]
    dataset = eval_images(data, picked, b)
    images = torch.stack([dataset[i][0] for i in range(len(picked))])
    predicted = fold_result["test_scores"][rows].argmax(axis=1).tolist()
    actual = data.targets[picked].argmax(axis=1) if data.multilabel else data.targets[picked]
    cams = class_activation_maps(trunk.to(device), fold_result["classifier"][0], images.to(device), predicted)
    return save_cam_grid(path, images, cams, predicted, list(actual), data.classes, b.cam.columns)


def benchmark_inputs(b: DictConfig, data: LabelledImages) -> List[str]:
    """``config.benchmark.inputs`` checked against the dataset: ``["image"]``, ``["text"]`` or both;
    null is everything the dataset has (image + meme text for Hateful Memes, image elsewhere)."""
    has = ["image"] + (["text"] if data.texts is not None else [])
    inputs = list(b.inputs) if b.get("inputs") else has
    unknown = [i for i in inputs if i not in has]
    if unknown or not inputs:
        raise ConfigError(f"config.benchmark.inputs={inputs}: {data.name} offers {has}")
    return inputs


def evaluate_trunk(
    trunk: Optional[nn.Module],
    data: LabelledImages,
    b: DictConfig,
    run_dir: str,
    device: str = "cpu",
    seed: int = 0,
    cam_path: Optional[str] = None,
    precision: str = "fp32",
) -> Dict:
    """Runs ``b.protocol`` (``linear`` or ``finetune``) on every fold of ``data``; ``precision``
    (``config.speed.precision``) applies to feature extraction and fine-tuning. ``b.inputs`` picks
    image features, text features or both where the dataset has texts; text alone trains the linear
    classifier grid on the frozen text features and needs no trunk (``trunk`` may be None).

    Returns ``{"folds": [per-fold metrics], "summary": {"<split>_<m>": {"mean", "std"}}, "cam": path}``.
    """
    protocol = PROTOCOLS.get(b.protocol, "config.benchmark.protocol")
    inputs = benchmark_inputs(b, data)
    cache = FeatureCache(b.feature_cache or os.path.join(run_dir, "features"))
    extra = text_features(data.texts, b.dataset.text_encoder, cache, device) if "text" in inputs else None
    cam = None
    if "image" not in inputs:
        folds = linear_grid(data, b, [extra], seed)
    else:
        folds, cam_trunk = protocol(trunk, data, b, cache, device, seed, extra, precision)
        if cam_path:
            cam = write_cam_grid(cam_path, cam_trunk, data, folds[0], data.folds[0], b, device)
    kept = [{k: v for k, v in f.items() if k not in ("classifier", "test_scores", "trunk")} for f in folds]
    return {"folds": kept, "summary": summarize(kept, data.metrics), "cam": cam, "inputs": inputs}


def check_benchmark_inputs(cfg: DictConfig) -> None:
    """The one-line errors a benchmark finds from its config alone (``cfg``: the ``config`` node), raised
    before anything is written or queued: the protocol, the dataset name and folder, and the trunk when
    the image is an input."""
    b = cfg.benchmark
    PROTOCOLS.get(b.protocol, "config.benchmark.protocol")
    check_benchmark_dataset(b.dataset.name, b.dataset.root)
    if "image" in (b.get("inputs") or ["image"]):
        TRUNKS.get(cfg.model.trunk, "config.model.trunk")


@ENGINES.register("benchmark")
@keeps_process_state
def run_benchmark(root_cfg: DictConfig) -> Dict:
    """The benchmark of ``root_cfg.config`` end to end: run folder, ``metrics.json``, results row, CAM grid."""
    cfg = root_cfg.config
    check_benchmark_inputs(cfg)
    b = cfg.benchmark
    d = b.dataset
    data = read_benchmark_dataset(
        d.name,
        d.root,
        files=dict(d.files),
        multilabel=d.multilabel,
        label_separator=d.label_separator,
        val_fraction=d.val_fraction,
        split_fractions=list(d.split_fractions),
        split_seeds=list(d.split_seeds),
        seed=cfg.seed,
    )
    inputs = benchmark_inputs(b, data)
    trunk = benchmark_trunk(cfg.model, cfg.seed) if "image" in inputs else None
    setup_logging(cfg.run_dir)
    write_resolved_config(root_cfg, cfg.run_dir)
    data = drop_unreadable(data, cfg.data.max_bad_image_fraction, b.num_workers)
    device = "cuda" if use_gpu(cfg.device) else "cpu"
    logger.info(
        "%s: %s protocol on %s, %d images, %d classes, %d fold(s), trunk %s, weights %s",
        cfg.name,
        b.protocol,
        " + ".join(inputs),
        len(data.paths),
        len(data.classes),
        len(data.folds),
        cfg.model.trunk if trunk is not None else "none",
        cfg.model.weights or "random init",
    )
    fold = data.folds[0]
    logger.info(
        "%s splits: %s",
        cfg.name,
        "; ".join(f"{split} {len(fold[split])} images from {data.source(split)}" for split in ("train", "val", "test")),
    )
    result = evaluate_trunk(
        trunk, data, b, cfg.run_dir, device, cfg.seed, os.path.join(cfg.run_dir, "cam.png"), cfg.speed.precision
    )
    if "sweep" in result["folds"][0]:
        result["sweep_table"] = write_sweep_table(
            os.path.join(cfg.run_dir, "finetune_sweep.md"), result["folds"], data.metrics
        )
    text = format_result(result["summary"], data.metrics, data.report_split, len(data.folds))
    record = {
        "benchmark": cfg.name,
        "dataset": data.name,
        "num_images": len(data.paths),
        "protocol": b.protocol,
        "trunk": cfg.model.trunk,
        "weights": cfg.model.weights,
        "report_split": data.report_split,
        "metrics": list(data.metrics),
        "layout": data.layout,
        **result,
    }
    append_metrics(os.path.join(cfg.run_dir, "metrics.json"), record)
    protocol = b.protocol if b.get("inputs") is None else f"{b.protocol} ({' + '.join(result['inputs'])})"
    append_table_row(
        b.results_table,
        [cfg.name, protocol, cfg.model.trunk, cfg.model.weights or "random init", text, len(data.folds), cfg.run_dir],
    )
    logger.info("%s: %s (metrics.json and %s)", cfg.name, text, b.results_table)
    print(f"{cfg.name}: {text}", flush=True)
    return record


run_benchmark.check_inputs = check_benchmark_inputs  # what the launcher checks before queueing
