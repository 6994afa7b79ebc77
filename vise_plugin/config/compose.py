"""VISSL's command-line grammar on Hydra's compose API.

``config=pretrain/vise_r50_1m`` picks ``configs/pretrain/vise_r50_1m.yaml``; ``config.a.b=v``
overrides an existing key; ``+config.a.b=v`` adds one. Every key must exist in
``configs/defaults.yaml`` (keys below an empty mapping there are free), so a misspelt key fails
at once, naming the nearest valid one.
"""

import difflib
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def config_dir() -> Path:
    """``$VISE_CONFIG_DIR``, else the ``configs/`` folder of this checkout."""
    return Path(os.environ.get("VISE_CONFIG_DIR", DEFAULT_CONFIG_DIR)).resolve()


def _flat_nodes(node, prefix: str = "") -> Iterable[Tuple[str, object]]:
    """``(dotted key, node)`` for every key below ``node``, without resolving interpolations."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            child = node._get_node(key)
            yield path, child
            yield from _flat_nodes(child, path)


def _flat_keys(node) -> List[str]:
    return [key for key, _ in _flat_nodes(node)]


def _open_prefixes(defaults: DictConfig) -> Set[str]:
    """Keys whose value in the defaults file is an empty mapping: any sub-key is allowed."""
    return {k for k, n in _flat_nodes(defaults) if isinstance(n, DictConfig) and len(n) == 0}


def _nearest(key: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    return match[0] if match else "?"


def _unknown_key(key: str, known: Set[str], open_prefixes: Set[str]) -> bool:
    if key in known:
        return False
    return not any(key.startswith(p + ".") for p in open_prefixes)


def _experiment_names(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml") if p.name != "defaults.yaml")


def compose_config(args: Sequence[str], root: Optional[Path] = None) -> DictConfig:
    """Composes the config for command-line ``args`` (``config=...`` plus overrides).

    Raises :class:`ConfigError` (one line) for a missing or unknown experiment, an unknown key
    in an override or an experiment file, or an override Hydra cannot parse.
    """
    root = root or config_dir()
    names = [a for a in args if a.startswith("config=")]
    overrides = [a for a in args if not a.startswith("config=")]
    if len(names) != 1:
        raise ConfigError("give exactly one config=<path under configs/>, e.g. config=pretrain/vise_r50_1m")
    name = names[0][len("config="):].removesuffix(".yaml")
    if not (root / f"{name}.yaml").is_file():
        raise ConfigError(f"config={name}: no file {root / name}.yaml (nearest: {_nearest(name, _experiment_names(root))})")
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None

    defaults = OmegaConf.load(root / "defaults.yaml")
    known = set(_flat_keys(defaults))
    open_prefixes = _open_prefixes(defaults)
    for o in parsed:
        if o.is_add() or o.is_force_add():
            known.add(o.key_or_group)
            continue
        if _unknown_key(o.key_or_group, known, open_prefixes):
            raise ConfigError(f"unknown key '{o.key_or_group}' in override '{o.input_line}' "
                              f"(nearest valid key: {_nearest(o.key_or_group, sorted(known))})")
    try:
        with initialize_config_dir(config_dir=str(root), version_base=None):
            cfg = compose(config_name=name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"config={name}: " + " ".join(str(e).split())) from None
    for key in _flat_keys(cfg):
        if _unknown_key(key, known, open_prefixes):
            raise ConfigError(f"unknown key '{key}' in configs/{name}.yaml or its parents "
                              f"(nearest valid key: {_nearest(key, sorted(known))})")
    _check_types(cfg, defaults)
    return cfg


def _kind(value) -> Optional[str]:
    """The kind a default value asks for: bool, int, number, list; None accepts anything."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, ListConfig):
        return "list"
    return None


def _fits(value, kind: str) -> bool:
    if value is None:
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, (ListConfig, list))


def _check_types(cfg: DictConfig, defaults: DictConfig) -> None:
    """Each value whose default is a bool, an integer, a number or a list must be one (or null)."""
    for key, node in _flat_nodes(defaults):
        if isinstance(node, DictConfig) or node._is_interpolation():
            continue
        kind = _kind(node if isinstance(node, ListConfig) else node._value())
        if kind is None:
            continue
        try:
            value = OmegaConf.select(cfg, key)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{key}: {' '.join(str(e).split())}") from None
        if not _fits(value, kind):
            expected = {"int": "an integer", "bool": "true or false", "number": "a number", "list": "a list"}[kind]
            raise ConfigError(f"{key}={value!r}: expected {expected}, got {type(value).__name__}")


def to_yaml(cfg: DictConfig) -> str:
    """The config with every interpolation resolved, as YAML (what ``train_config.yaml`` holds)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
