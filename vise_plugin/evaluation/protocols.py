"""Evaluation protocols, by name in :data:`vise_plugin.registry.PROTOCOLS` (``config.benchmark.protocol``).

A protocol is called as ``protocol(trunk, data, b, cache, device, seed, extra, precision)`` with the
trunk, the :class:`LabelledImages`, ``config.benchmark``, the :class:`FeatureCache`, the device, the
seed, frozen extra features ``(N, E)`` or None (the meme text) and the precision; it returns the
per-fold results (``val_<metric>``, ``test_<metric>``, ``test_scores``, ``classifier``) and the trunk
whose class activation maps the CAM grid shows.
"""

import copy
import dataclasses
import itertools
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch.nn as nn
from omegaconf import DictConfig

from vise_plugin.data.transforms import eval_transform
from vise_plugin.evaluation.datasets import ImageListDataset, LabelledImages
from vise_plugin.evaluation.features import extract_features, state_fingerprint, trunk_up_to
from vise_plugin.evaluation.finetune import FinetuneSettings, finetune_eval
from vise_plugin.evaluation.linear_classifiers import linear_eval
from vise_plugin.feature_cache import FeatureCache, list_digest
from vise_plugin.registry import PROTOCOLS


def eval_images(data: LabelledImages, indices, b: DictConfig) -> ImageListDataset:
    """Images ``indices`` of ``data`` through the evaluation transform of ``config.benchmark``."""
    return ImageListDataset(data, indices, eval_transform(b.image_size, b.resize_ratio))


def linear_grid(data: LabelledImages, b: DictConfig, blocks: Sequence[np.ndarray], seed: int) -> List[Dict]:
    """The grid of linear classifiers of ``config.benchmark.linear`` on feature blocks ``(N, D_i)``, every fold."""
    le = b.linear
    return [
        linear_eval(
            list(blocks),
            data.targets,
            fold,
            list(le.lrs),
            list(le.weight_decays),
            le.epochs,
            le.batch_size,
            seed,
            data.metrics,
        )
        for fold in data.folds
    ]


@PROTOCOLS.register("linear")
def linear(
    trunk: nn.Module,
    data: LabelledImages,
    b: DictConfig,
    cache: FeatureCache,
    device: str,
    seed: int,
    extra: Optional[np.ndarray],
    precision: str,
) -> Tuple[List[Dict], nn.Module]:
    """Frozen trunk: pooled features of ``b.layer`` extracted once (cached), then the linear grid."""
    before = state_fingerprint(trunk)
    key = FeatureCache.key(
        trunk=before,
        images=list_digest(data.paths),
        root=data.root,
        layer=b.layer,
        size=b.image_size,
        resize=b.resize_ratio,
        precision=precision,
    )
    dataset = eval_images(data, np.arange(len(data.paths)), b)
    feats = cache.get(
        f"{data.name}_{b.layer}_{key[:8]}",
        key,
        lambda path: extract_features(
            trunk,
            dataset,
            b.batch_size,
            b.num_workers,
            device,
            b.layer,
            "avg",
            out=path,
            desc=f"{data.name} features",
            precision=precision,
        ),
    )
    if state_fingerprint(trunk) != before:
        raise RuntimeError("the trunk changed during linear evaluation")
    return linear_grid(data, b, [feats] if extra is None else [feats, extra], seed), trunk_up_to(trunk, b.layer)


def sweep_grid(b: DictConfig, settings: FinetuneSettings) -> List[FinetuneSettings]:
    """The settings of ``config.benchmark.finetune.sweep`` (lists of ``trunk_lr``, ``head_lr``, ``epochs``;
    a missing or empty list keeps the single value of ``config.benchmark.finetune``), every combination."""
    sweep = dict(b.finetune.get("sweep") or {})
    values = {k: list(sweep.get(k) or [getattr(settings, k)]) for k in ("trunk_lr", "head_lr", "epochs")}
    return [
        dataclasses.replace(settings, trunk_lr=t, head_lr=h, epochs=int(e))
        for t, h, e in itertools.product(values["trunk_lr"], values["head_lr"], values["epochs"])
    ]


@PROTOCOLS.register("finetune")
def finetune(
    trunk: nn.Module,
    data: LabelledImages,
    b: DictConfig,
    cache: FeatureCache,
    device: str,
    seed: int,
    extra: Optional[np.ndarray],
    precision: str,
) -> Tuple[List[Dict], nn.Module]:
    """The whole network trained per fold (a copy of ``trunk`` each time), for each point of the sweep
    (:func:`sweep_grid`); the point with the best first metric on val is reported. Each fold's result
    lists every point (``sweep``: settings, val and test metrics)."""
    grid = sweep_grid(b, FinetuneSettings.from_config(b, precision))
    key = f"val_{data.metrics[0]}"
    folds = []
    for fold in data.folds:
        points, best, best_val = [], None, -np.inf
        for s in grid:  # only the best run's fine-tuned trunk is kept, not one per point
            run = finetune_eval(copy.deepcopy(trunk), data, fold, s, device, seed, extra, data.metrics)
            points.append(
                {
                    "trunk_lr": s.trunk_lr,
                    "head_lr": s.head_lr,
                    "epochs": s.epochs,
                    **{f"{split}_{m}": run[f"{split}_{m}"] for split in ("val", "test") for m in data.metrics},
                }
            )
            val = -np.inf if np.isnan(run[key]) else run[key]  # the first point wins ties; a NaN never wins
            if best is None or val > best_val:
                best, best_val = {**run, "trunk_lr": s.trunk_lr, "head_lr": s.head_lr, "epochs": s.epochs}, val
        folds.append({**best, "sweep": points})
    return folds, folds[0]["trunk"]
