"""The parts a pretraining config names (trunk, heads, loss, dataset), looked up in their registries from
the config alone, so that a misspelt name fails in one line before anything is written or queued."""

from omegaconf import DictConfig, OmegaConf

from vise_plugin.errors import ConfigError
from vise_plugin.registry import TRUNKS, require_classy, spec


def check_named_parts(cfg: DictConfig) -> None:
    """Raises the one-line :class:`ConfigError` that building the parts named in ``cfg`` (the ``config``
    node of a composed config) would raise for a name nothing is registered under, or for an empty
    ``config.model.heads``."""
    TRUNKS.get(cfg.model.trunk, "config.model.trunk")
    heads = OmegaConf.to_container(cfg.model.heads, resolve=True)
    if not heads:
        raise ConfigError("config.model.heads is empty: name at least one head, e.g. [vise_multi_head]")
    for i, head in enumerate(heads):
        key = f"config.model.heads[{i}]"
        require_classy("head", spec(head, key), key)
    require_classy("loss", spec(OmegaConf.to_container(cfg.loss, resolve=True), "config.loss"), "config.loss")
    dataset = OmegaConf.to_container(cfg.data, resolve=True)["dataset"]
    require_classy("dataset", spec(dataset, "config.data.dataset"), "config.data.dataset")
