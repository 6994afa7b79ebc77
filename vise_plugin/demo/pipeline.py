"""The main job on the embedded demo world: world -> labels -> pretraining -> linear eval table."""

import logging
import os
from typing import Dict

import torch
from omegaconf import DictConfig

from ..benchmark import evaluate_trunk
from ..benchmark.results import append_metrics
from ..benchmark.datasets import read_image_folder
from ..engine.pretrain import pretrain
from ..engine.run_folder import setup_logging
from ..labels.pipeline import run_label_job
from ..models import build_trunk
from .world import generate_downstream, generate_posts

logger = logging.getLogger(__name__)


def format_table(results: Dict[str, Dict]) -> str:
    lines = ["| trunk | val acc (%) | test acc (%) |", "|---|---|---|"]
    lines += [f"| {name} | {r['val_acc']['mean']:.1f} | {r['test_acc']['mean']:.1f} |" for name, r in results.items()]
    return "\n".join(lines)


def run_demo(root_cfg: DictConfig) -> Dict[str, Dict]:
    """Runs the whole demo for ``config=demo/vise_demo``; returns ``{trunk name: {"<split>_acc": {"mean", "std"}}}``."""
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
    trainer = pretrain(root_cfg)
    logger.info("4/4 linear evaluation on the downstream emotion task")
    torch.manual_seed(cfg.seed)
    trunks = {"random init": build_trunk(cfg.model.trunk), "VisE (demo)": trainer.base_model.trunk.cpu()}
    data = read_image_folder(downstream, seed=cfg.seed)
    results = {}
    for (name, trunk), file_name in zip(trunks.items(), ("cam_random_init.png", "cam_vise.png")):
        run = evaluate_trunk(trunk, data, cfg.benchmark, cfg.run_dir, "cpu", cfg.seed,
                             os.path.join(cfg.run_dir, file_name))
        results[name] = run["summary"]
    table = format_table(results)
    append_metrics(os.path.join(cfg.run_dir, "metrics.json"), {"benchmark": "demo_linear", "summary": results})
    with open(os.path.join(cfg.run_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\nLinear evaluation on the demo's downstream emotion task (6 classes):\n" + table, flush=True)
    return results
