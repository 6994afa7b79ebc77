"""VISSL's command-line grammar on Hydra's compose API.

``config=pretrain/vise_r50_1m`` picks ``pretrain/vise_r50_1m.yaml`` from the first folder of the
search path that has it: ``./configs`` (the working directory's), the folders of
``config.config_dirs=[...]`` (and ``$VISE_CONFIG_DIRS``, ``:``-separated), then the configs shipped
in the package (``vise_plugin/configs``). An experiment file's defaults are looked up along the same
path, so a user's file can extend a shipped one. ``config.a.b=v`` overrides an existing key;
``+config.a.b=v`` adds one. Every key must exist in the shipped ``defaults.yaml`` (keys below an
empty mapping there, or below a component mapping with a ``name``, are free), so a misspelt key
fails at once, naming the nearest valid one.
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

from vise_plugin.config.imports import import_modules
from vise_plugin.errors import ConfigError

SHIPPED_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

#: keys of earlier versions, and what replaced them
RENAMED = {
    "config.model.tasks": "config.model.heads (e.g. [{name: vise_multi_head, tasks: [comments]}]); web tags are "
    "the web_tags source in config.data.sources, web_tag_head and web_tag_loss",
}


def config_dir() -> Path:
    """The configs shipped in the package (``defaults.yaml`` and the experiments)."""
    return SHIPPED_CONFIG_DIR


def search_path(config_dirs: Sequence[str] = ()) -> List[Path]:
    """Where experiment files are looked for, in order: ``./configs``, ``config_dirs``,
    ``$VISE_CONFIG_DIRS`` and the shipped configs (each folder once)."""
    env = [d for d in os.environ.get("VISE_CONFIG_DIRS", "").split(os.pathsep) if d]
    asked = [("config.config_dirs", d) for d in config_dirs] + [("$VISE_CONFIG_DIRS", d) for d in env]
    for where, folder in asked:
        if not Path(folder).expanduser().is_dir():
            raise ConfigError(f"{where}: {folder} is not a folder")
    found: List[Path] = []
    for folder in [Path.cwd() / "configs", *(Path(d) for _, d in asked), SHIPPED_CONFIG_DIR]:
        folder = folder.expanduser().resolve()
        if folder.is_dir() and folder not in found:
            found.append(folder)
    return found


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


#: keys whose value is a component, a name with its parameters: any parameter key is allowed below them
COMPONENT_KEYS = {"config.loss", "config.data.dataset"}


def _is_open_key(key: str, open_prefixes: Set[str]) -> bool:
    """A component key, or a key at or under a mapping that is empty in the defaults."""
    return any(key == k or key.startswith(k + ".") for k in open_prefixes)


def _open_prefixes(cfg: DictConfig) -> Set[str]:
    """Keys whose value is an empty mapping, and the component keys: any sub-key is allowed."""
    return {k for k, n in _flat_nodes(cfg) if isinstance(n, DictConfig) and len(n) == 0} | COMPONENT_KEYS


def _nearest(key: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    return match[0] if match else "?"


def _unknown_key(key: str, known: Set[str], open_prefixes: Set[str]) -> bool:
    if key in known:
        return False
    return not any(key.startswith(p + ".") for p in open_prefixes)


def _experiment_names(roots: Sequence[Path]) -> List[str]:
    return sorted(
        {
            str(p.relative_to(root).with_suffix(""))
            for root in roots
            for p in root.rglob("*.yaml")
            if p.name != "defaults.yaml"
        }
    )


def _unknown_key_error(key: str, where: str, known: Set[str]) -> ConfigError:
    if key in RENAMED:
        return ConfigError(f"{key} in {where} was replaced by {RENAMED[key]}")
    return ConfigError(f"unknown key '{key}' in {where} (nearest valid key: {_nearest(key, sorted(known))})")


def _config_dirs(parsed) -> List[str]:
    """The folders of a ``config.config_dirs=[...]`` override, read before composing."""
    for o in parsed:
        if o.key_or_group == "config.config_dirs":
            value = o.value()
            return [str(v) for v in (value if isinstance(value, list) else [value])]
    return []


def compose_config(args: Sequence[str], root: Optional[Path] = None) -> DictConfig:
    """Composes the config for command-line ``args`` (``config=...`` plus overrides) and imports the
    modules of ``config.imports``.

    ``root`` replaces the whole search path with one folder. Raises :class:`ConfigError` (one line)
    for a missing or unknown experiment, an unknown key in an override or an experiment file, or an
    override Hydra cannot parse.
    """
    names = [a for a in args if a.startswith("config=")]
    overrides = [a for a in args if not a.startswith("config=")]
    if len(names) != 1:
        raise ConfigError("give exactly one config=<experiment>, e.g. config=pretrain/vise_r50_1m")
    name = names[0][len("config=") :].removesuffix(".yaml")
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    folders = [Path(root)] if root else search_path(_config_dirs(parsed))
    primary = next((f for f in folders if (f / f"{name}.yaml").is_file()), None)
    if primary is None:
        raise ConfigError(
            f"config={name}: no {name}.yaml in {', '.join(map(str, folders))} "
            f"(nearest: {_nearest(name, _experiment_names(folders))})"
        )

    defaults = OmegaConf.load(SHIPPED_CONFIG_DIR / "defaults.yaml")
    known = set(_flat_keys(defaults))
    open_prefixes = _open_prefixes(defaults)
    for o in parsed:
        if o.is_add() or o.is_force_add():
            known.add(o.key_or_group)
            continue
        if _unknown_key(o.key_or_group, known, open_prefixes):
            raise _unknown_key_error(o.key_or_group, f"override '{o.input_line}'", known)
    # A component's parameters (and an open mapping's keys) are not all in the defaults: their overrides add
    # keys as well as change them.
    overrides = [
        f"++{o.input_line}"
        if _is_open_key(o.key_or_group, open_prefixes) and not (o.is_add() or o.is_force_add())
        else o.input_line
        for o in parsed
    ]
    others = [f"file://{f}" for f in folders if f != primary]
    hydra_overrides = [f"hydra.searchpath=[{','.join(others)}]"] if others else []
    try:
        with initialize_config_dir(config_dir=str(primary), version_base=None):
            cfg = compose(config_name=name, overrides=list(overrides) + hydra_overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"config={name}: " + " ".join(str(e).split())) from None
    for key in _flat_keys(cfg):
        if _unknown_key(key, known, open_prefixes):
            raise _unknown_key_error(key, f"{primary / name}.yaml or its parents", known)
    _check_types(cfg, defaults)
    import_modules(cfg.config.imports)
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
