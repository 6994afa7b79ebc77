"""The main job on the embedded demo world: world -> labels -> pretraining -> linear eval table."""

import logging
import os
from typing import Dict, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from ..benchmark import evaluate_trunk
from ..benchmark.results import append_metrics
from ..benchmark.datasets import read_image_folder
from ..data import LabelStore
from ..engine.pretrain import pretrain
from ..errors import ConfigError
from ..engine.run_folder import setup_logging
from ..labels.pipeline import run_label_job
from ..models import build_trunk
from .world import generate_downstream, generate_posts, write_demo_tags

logger = logging.getLogger(__name__)


def format_table(results: Dict[str, Dict]) -> str:
    lines = ["| trunk | val acc (%) | test acc (%) |", "|---|---|---|"]
    lines += [f"| {name} | {r['val_acc']['mean']:.1f} | {r['test_acc']['mean']:.1f} |" for name, r in results.items()]
    return "\n".join(lines)


# demo source -> (table row, config.model.tasks; None: the config's own)
SOURCES = {
    "vise": ("VisE (demo)", None),
    "tags": ("web tags (demo)", ["tags"]),
    "both": ("VisE + web tags (demo)", ["comments", "reactions", "tags"]),
}


def _demo_tags(cfg: DictConfig, world: str) -> Tuple[str, str]:
    """The demo world's web tags over the images of the label store (those VisE pretrains on)."""
    store = LabelStore(cfg.data.labels)
    return write_demo_tags(os.path.join(world, "posts.jsonl"), images={store.images[i] for i in range(len(store))})


def _source_config(root_cfg: DictConfig, source: str, world: str, tag_files: Tuple[str, str]) -> DictConfig:
    """The pretraining config of one supervision source, in ``<run_dir>/pretrain_<source>``;
    ``tag_files``: the tag list and vocabulary of :func:`_demo_tags`."""
    resolved = OmegaConf.create(OmegaConf.to_container(root_cfg, resolve=True))
    cfg = resolved.config
    cfg.run_dir = os.path.join(cfg.run_dir, f"pretrain_{source}")
    cfg.model.tasks = SOURCES[source][1] or list(cfg.model.tasks)
    if "tags" in cfg.model.tasks:
        cfg.data.tags.list, cfg.data.tags.vocab = tag_files
        cfg.data.tags.image_root = world
    return resolved


def run_demo(root_cfg: DictConfig) -> Dict[str, Dict]:
    """Runs the whole demo for ``config=demo/vise_demo``; returns ``{trunk name: {"<split>_acc": {"mean", "std"}}}``."""
    cfg = root_cfg.config
    demo = cfg.demo
    sources = list(demo.get("sources", ["vise"]))
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ConfigError(f"config.demo.sources: unknown {unknown}; use some of {sorted(SOURCES)}")
    setup_logging(cfg.run_dir)
    world = os.path.join(cfg.run_dir, "world")
    logger.info("1/4 generating the demo world in %s", world)
    generate_posts(world, demo.num_posts, demo.world_seed, cfg.data.image_size)
    downstream = generate_downstream(os.path.join(world, "downstream"), dict(demo.downstream_per_class),
                                     demo.world_seed + 1, cfg.data.image_size)
    logger.info("2/4 generating labels into %s", cfg.labels.output)
    run_label_job(cfg)
    logger.info("3/4 pretraining: %s", ", ".join(SOURCES[s][0] for s in sources))
    torch.manual_seed(cfg.seed)
    trunks = {"random init": ("random_init", build_trunk(cfg.model.trunk))}
    tag_files = _demo_tags(cfg, world) if any("tags" in (SOURCES[s][1] or []) for s in sources) else None
    for source in sources:
        trainer = pretrain(root_cfg if sources == ["vise"] else _source_config(root_cfg, source, world, tag_files))
        trunks[SOURCES[source][0]] = (source, trainer.base_model.trunk.cpu())
        setup_logging(cfg.run_dir)
    logger.info("4/4 linear evaluation on the downstream emotion task")
    data = read_image_folder(downstream, seed=cfg.seed)
    results = {}
    for name, (key, trunk) in trunks.items():
        run = evaluate_trunk(trunk, data, cfg.benchmark, cfg.run_dir, "cpu", cfg.seed,
                             os.path.join(cfg.run_dir, f"cam_{key}.png"))
        results[name] = run["summary"]
    table = format_table(results)
    append_metrics(os.path.join(cfg.run_dir, "metrics.json"), {"benchmark": "demo_linear", "summary": results})
    with open(os.path.join(cfg.run_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\nLinear evaluation on the demo's downstream emotion task (6 classes):\n" + table, flush=True)
    return results
