"""The main job on the embedded demo world: world -> labels -> pretraining -> linear eval table."""

import json
import logging
import os
from typing import Dict

import torch
import torchvision
from omegaconf import DictConfig

from ..benchmark import extract_features, linear_eval, state_fingerprint
from ..data.transforms import eval_transform
from ..engine.pretrain import pretrain
from ..engine.run_folder import setup_logging
from ..labels.pipeline import run_label_job
from ..models import build_trunk
from .world import generate_downstream, generate_posts

logger = logging.getLogger(__name__)


def linear_eval_trunk(trunk: torch.nn.Module, downstream: str, image_size: int, cfg: DictConfig, name: str) -> Dict:
    """Linear protocol of ``cfg.linear_eval`` on the ImageFolder splits of ``downstream``."""
    before = state_fingerprint(trunk)
    splits = {}
    for split in ("train", "val", "test"):
        data = torchvision.datasets.ImageFolder(os.path.join(downstream, split), eval_transform(image_size, 1.0))
        splits[split] = extract_features(trunk, data, desc=f"{name} {split} features")
    if state_fingerprint(trunk) != before:
        raise RuntimeError(f"{name}: the trunk changed during linear evaluation")
    le = cfg.linear_eval
    return linear_eval(splits["train"], splits["val"], splits["test"], list(le.lrs), list(le.weight_decays),
                       le.epochs, le.batch_size, cfg.seed)


def format_table(results: Dict[str, Dict]) -> str:
    lines = ["| trunk | val acc (%) | test acc (%) |", "|---|---|---|"]
    lines += [f"| {name} | {r['val_acc']:.1f} | {r['test_acc']:.1f} |" for name, r in results.items()]
    return "\n".join(lines)


def run_demo(root_cfg: DictConfig) -> Dict[str, Dict]:
    """Runs the whole demo for ``config=demo/vise_demo``; returns ``{trunk name: metrics}``."""
    cfg = root_cfg.config
    setup_logging(cfg.run_dir)
    world = os.path.join(cfg.run_dir, "world")
    demo = cfg.demo
    logger.info("1/4 generating the demo world in %s", world)
    generate_posts(world, demo.num_posts, demo.world_seed, cfg.data.image_size)
    downstream = generate_downstream(os.path.join(world, "downstream"), dict(demo.downstream_per_class),
                                     demo.world_seed + 1, cfg.data.image_size)
    logger.info("2/4 generating labels into %s", cfg.labels.output)
    run_label_job(cfg)
    logger.info("3/4 VisE pretraining")
    task = pretrain(root_cfg)
    logger.info("4/4 linear evaluation on the downstream emotion task")
    torch.manual_seed(cfg.seed)
    trunks = {"random init": build_trunk(cfg.model.trunk), "VisE (demo)": task.base_model.trunk.cpu()}
    results = {name: linear_eval_trunk(t, downstream, cfg.data.image_size, cfg, name) for name, t in trunks.items()}
    table = format_table(results)
    with open(os.path.join(cfg.run_dir, "metrics.json"), "a") as f:
        f.write(json.dumps({"benchmark": "demo_linear", "results": results}) + "\n")
    with open(os.path.join(cfg.run_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\nLinear evaluation on the demo's downstream emotion task (6 classes):\n" + table, flush=True)
    return results
