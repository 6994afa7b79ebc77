"""The main job on the embedded demo world: world -> labels -> pretraining -> linear eval table."""

import logging
import os
from typing import Dict, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from vise_plugin.demo.world import generate_downstream, generate_posts, write_demo_tags
from vise_plugin.engine.pretrain import pretrain
from vise_plugin.engine.run_folder import setup_logging
from vise_plugin.errors import ConfigError
from vise_plugin.evaluation import evaluate_trunk
from vise_plugin.evaluation.datasets import read_image_folder
from vise_plugin.evaluation.results import append_metrics
from vise_plugin.labels import LabelStore
from vise_plugin.labels.job.pipeline import run_label_job
from vise_plugin.models import build_trunk
from vise_plugin.process_state import keeps_process_state
from vise_plugin.registry import ENGINES

logger = logging.getLogger(__name__)


def format_table(results: Dict[str, Dict]) -> str:
    lines = ["| trunk | val acc (%) | test acc (%) |", "|---|---|---|"]
    lines += [f"| {name} | {r['val_acc']['mean']:.1f} | {r['test_acc']['mean']:.1f} |" for name, r in results.items()]
    return "\n".join(lines)


WEB_TAGS = "web_tags"  # the target source the demo writes tag files for


def _demo_tags(cfg: DictConfig, world: str) -> Tuple[str, str]:
    """The demo world's web tags over the images of the label store (those VisE pretrains on)."""
    store = LabelStore(cfg.data.labels)
    return write_demo_tags(os.path.join(world, "posts.jsonl"), images={store.images[i] for i in range(len(store))})


def _uses_web_tags(cfg: DictConfig) -> bool:
    return any((s if isinstance(s, str) else s.get("name")) == WEB_TAGS for s in cfg.data.sources)


def _source_config(root_cfg: DictConfig, source: str, world: str, tag_files: Optional[Tuple[str, str]]) -> DictConfig:
    """The pretraining config of ``config.demo.sources[source]`` (its keys other than ``label`` merged
    over the run's config), in ``<run_dir>/pretrain_<source>`` when there are several sources;
    ``tag_files``: the tag list and vocabulary of :func:`_demo_tags`, given to the ``web_tags`` source
    when the run has it."""
    entry = {k: v for k, v in OmegaConf.to_container(root_cfg.config.demo.sources[source]).items() if k != "label"}
    resolved = OmegaConf.merge(OmegaConf.create(OmegaConf.to_container(root_cfg, resolve=True)), {"config": entry})
    cfg = resolved.config
    if len(root_cfg.config.demo.sources) > 1:
        cfg.run_dir = os.path.join(cfg.run_dir, f"pretrain_{source}")
    if tag_files is not None and _uses_web_tags(cfg):
        cfg.data.tags.list, cfg.data.tags.vocab = tag_files
        cfg.data.tags.image_root = world
    return resolved


@ENGINES.register("demo")
@keeps_process_state
def run_demo(root_cfg: DictConfig) -> Dict[str, Dict]:
    """Runs the whole demo for ``config=demo/vise_demo``; returns ``{trunk name: {"<split>_acc": {"mean", "std"}}}``."""
    cfg = root_cfg.config
    demo = cfg.demo
    sources = list(demo.sources)
    if not sources:
        raise ConfigError("config.demo.sources is empty: give at least one {<key>: {label: ..., <config keys>}}")
    setup_logging(cfg.run_dir)
    world = os.path.join(cfg.run_dir, "world")
    logger.info("1/4 generating the demo world in %s", world)
    generate_posts(world, demo.num_posts, demo.world_seed, cfg.data.image_size)
    downstream = generate_downstream(
        os.path.join(world, "downstream"), dict(demo.downstream_per_class), demo.world_seed + 1, cfg.data.image_size
    )
    logger.info("2/4 generating labels into %s", cfg.labels.output)
    run_label_job(cfg)
    logger.info("3/4 pretraining: %s", ", ".join(demo.sources[s].label for s in sources))
    torch.manual_seed(cfg.seed)
    trunks = {"random init": ("random_init", build_trunk(cfg.model.trunk))}
    needs_tags = any(_uses_web_tags(_source_config(root_cfg, s, world, None).config) for s in sources)
    tag_files = _demo_tags(cfg, world) if needs_tags else None
    for source in sources:
        trainer = pretrain(_source_config(root_cfg, source, world, tag_files))
        trunks[demo.sources[source].label] = (source, trainer.base_model.trunk.cpu())
        setup_logging(cfg.run_dir)
    logger.info("4/4 linear evaluation on the downstream emotion task")
    data = read_image_folder(downstream, seed=cfg.seed)
    results = {}
    for name, (key, trunk) in trunks.items():
        run = evaluate_trunk(
            trunk, data, cfg.benchmark, cfg.run_dir, "cpu", cfg.seed, os.path.join(cfg.run_dir, f"cam_{key}.png")
        )
        results[name] = run["summary"]
    table = format_table(results)
    append_metrics(os.path.join(cfg.run_dir, "metrics.json"), {"benchmark": "demo_linear", "summary": results})
    with open(os.path.join(cfg.run_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\nLinear evaluation on the demo's downstream emotion task (6 classes):\n" + table, flush=True)
    return results
