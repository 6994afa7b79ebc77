"""The parts a pretraining config names (trunk, heads, loss, dataset), looked up in their registries from
the config alone, so that a misspelt name fails in one line before anything is written or queued."""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from vise_plugin.errors import ConfigError
from vise_plugin.registry import DATASET_REGISTRY, HEAD_REGISTRY, LOSS_REGISTRY, TRUNKS, spec, unknown_name


def _require_registered(kind: str, registry: Any, value: Any, key: str) -> None:
    """The error :func:`vise_plugin.registry.build_classy` raises when ``value`` names nothing in ``registry``."""
    name = spec(value, key)["name"]
    if name not in registry:
        raise unknown_name(kind, name, list(registry), key + ".name")


def check_named_parts(cfg: DictConfig) -> None:
    """Raises the one-line :class:`ConfigError` that building the parts named in ``cfg`` (the ``config``
    node of a composed config) would raise for a name nothing is registered under, or for an empty
    ``config.model.heads``."""
    TRUNKS.get(cfg.model.trunk, "config.model.trunk")
    heads = OmegaConf.to_container(cfg.model.heads, resolve=True)
    if not heads:
        raise ConfigError("config.model.heads is empty: name at least one head, e.g. [vise_multi_head]")
    for i, head in enumerate(heads):
        _require_registered("head", HEAD_REGISTRY, head, f"config.model.heads[{i}]")
    _require_registered("loss", LOSS_REGISTRY, OmegaConf.to_container(cfg.loss, resolve=True), "config.loss")
    _require_registered("dataset", DATASET_REGISTRY, OmegaConf.to_container(cfg.data, resolve=True)["dataset"],
                        "config.data.dataset")
