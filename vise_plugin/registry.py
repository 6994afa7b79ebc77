"""Every part a config names is found here, by name.

The concepts classy-vision has keep classy-vision's registries, so a component written for classy
works as it is: ``register_model``, ``register_head``, ``register_loss``, ``register_dataset`` and
``register_task`` (re-exported below). Every other concept has one :class:`Registry` (fvcore's, with
an explicit name)::

    from vise_plugin.registry import TRUNKS

    @TRUNKS.register("my_trunk")
    def my_trunk() -> nn.Module: ...

A config then says ``config.model.trunk=my_trunk``; a module that registers parts is named in
``config.imports`` so that every process imports it before anything is built.
"""

import difflib
import importlib
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from classy_vision.dataset import DATASET_REGISTRY, build_dataset, register_dataset
from classy_vision.heads import HEAD_REGISTRY, build_head, register_head
from classy_vision.losses import LOSS_REGISTRY, build_loss, register_loss
from classy_vision.models import MODEL_REGISTRY, build_model, register_model
from classy_vision.tasks import TASK_REGISTRY, register_task
from fvcore.common.registry import Registry as _FvcoreRegistry

from vise_plugin.errors import ConfigError, error_summary


def unknown_name(what: str, name: Any, known: Sequence[str], key: Optional[str] = None) -> ConfigError:
    """The one-line error for a name nothing is registered under: the config key, the nearest
    registered name and all of them."""
    where = f"{key}={name!r}" if key else repr(name)
    nearest = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.0)
    hint = f"nearest: {nearest[0]}; " if nearest else ""
    return ConfigError(
        f"{where}: no {what} is registered under this name ({hint}registered: {', '.join(sorted(known))})"
    )


class Registry(_FvcoreRegistry):
    """fvcore's registry with an explicit name and the project's built-in entries loaded on first use.

    Args:
        name: what the entries are (``trunk``, ``engine``, ...), used in errors.
        builtins: modules whose import registers the project's own entries; imported the first
            time the registry is read, so that reading one registry does not import every layer.
            A module whose import fails is tried again on the next read (an optional package may
            have been installed meanwhile); until then every read that needs it (a name not found,
            the list of names) fails in one line naming the module and its error.
    """

    def __init__(self, name: str, builtins: Sequence[str] = ()):
        super().__init__(name)
        self._builtins = list(builtins)
        self._failed: Dict[str, str] = {}  # built-in module -> its import error, until an import succeeds

    def register(self, name: Any = None) -> Any:
        """``@REG.register("name")`` (or ``@REG.register()``: the object's ``__name__``)."""
        if name is None or isinstance(name, str):

            def deco(obj: Any) -> Any:
                self._do_register(name or obj.__name__, obj)
                return obj

            return deco
        return super().register(name)

    def _do_register(self, name: str, obj: Any) -> None:
        if self._obj_map.get(name) is obj:  # the same object again: a module imported anew after a failed try
            return
        super()._do_register(name, obj)

    def _load_builtins(self) -> None:
        """Imports the built-in modules not imported yet. One that fails is kept for the next call,
        its error in ``_failed``, and the entries it defined before failing are dropped (its half-run
        module is discarded; the next try defines them again)."""
        if self._failed:
            importlib.invalidate_caches()  # a package installed since the last try is found
        retry = []
        while self._builtins:
            module = self._builtins.pop(0)
            try:
                importlib.import_module(module)
            except Exception as e:  # ImportError, or an error raised while the module runs
                for name in [n for n, obj in self._obj_map.items() if getattr(obj, "__module__", None) == module]:
                    del self._obj_map[name]
                self._failed[module] = error_summary(e)
                retry.append(module)
            else:
                self._failed.pop(module, None)
        self._builtins.extend(retry)

    def _import_failures(self, what: str) -> ConfigError:
        failed = "; ".join(
            f"built-in module {module} failed to import ({error})" for module, error in self._failed.items()
        )
        return ConfigError(f"{what}: the {self._name} registry is incomplete: {failed}")

    def _all_loaded(self, what: str) -> None:
        """Loads the built-in modules; a one-line :class:`ConfigError` about ``what`` when one fails."""
        self._load_builtins()
        if self._failed:
            raise self._import_failures(what)

    def get(self, name: str, key: Optional[str] = None) -> Any:
        """The entry ``name``; a one-line :class:`ConfigError` naming ``key`` (the config key) when
        nothing is registered under it, or when it is not and a built-in module failed to import."""
        self._load_builtins()
        if name not in self._obj_map:
            if self._failed:
                raise self._import_failures(f"{key}={name!r}" if key else repr(name))
            raise unknown_name(self._name, name, self.names(), key)
        return self._obj_map[name]

    def names(self) -> List[str]:
        self._all_loaded(f"the names of the {self._name} registry")
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        if name not in self._obj_map and self._failed:
            raise self._import_failures(repr(name))
        return name in self._obj_map

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        self._all_loaded(f"the entries of the {self._name} registry")
        return iter(sorted(self._obj_map.items()))


TRUNKS = Registry("trunk", ["vise_plugin.models.trunks", "vise_plugin.models.clip_trunk"])
WEIGHT_FORMATS = Registry("weights format", ["vise_plugin.models.weight_formats"])
TARGET_SOURCES = Registry(
    "target source",
    ["vise_plugin.data.target_sources", "vise_plugin.data.tar_shards", "vise_plugin.data.img2dataset_shards"],
)
COMMENT_ENCODERS = Registry("comment encoder", ["vise_plugin.labels.encoders"])
KMEANS = Registry("K-means back-end", ["vise_plugin.labels.clustering"])
LR_SCHEDULES = Registry("lr schedule", ["vise_plugin.engine.schedule"])
ENGINES = Registry(
    "engine", ["vise_plugin.engine.pretrain", "vise_plugin.evaluation.runner", "vise_plugin.demo.pipeline"]
)
BENCHMARK_DATASETS = Registry("benchmark dataset", ["vise_plugin.evaluation.datasets"])
METRICS = Registry("metric", ["vise_plugin.evaluation.metrics"])
PROTOCOLS = Registry("evaluation protocol", ["vise_plugin.evaluation.protocols"])
POOLING = Registry("pooling", ["vise_plugin.evaluation.features"])

#: every fvcore registry of the project, by the name errors use (the smoke tests walk them all)
REGISTRIES: Dict[str, Registry] = {
    r._name: r
    for r in (
        TRUNKS,
        WEIGHT_FORMATS,
        TARGET_SOURCES,
        COMMENT_ENCODERS,
        KMEANS,
        LR_SCHEDULES,
        ENGINES,
        BENCHMARK_DATASETS,
        METRICS,
        PROTOCOLS,
        POOLING,
    )
}

_CLASSY = {
    "model": MODEL_REGISTRY,
    "head": HEAD_REGISTRY,
    "loss": LOSS_REGISTRY,
    "dataset": DATASET_REGISTRY,
    "task": TASK_REGISTRY,
}
_CLASSY_BUILD: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    "model": build_model,
    "head": build_head,
    "loss": build_loss,
    "dataset": build_dataset,
}


def spec(value: Any, key: str) -> Dict[str, Any]:
    """A component in a config, ``name`` or ``{name: ..., <parameters>}``, as a plain dict with ``name``."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return dict(value)
    raise ConfigError(f"{key}: expected a registered name or a mapping with 'name', found {value!r}")


def target_size(config: Mapping[str, Any], target: str, key: str = "num_classes") -> int:
    """``config["targets"][target][key]``. The runner adds ``targets`` (``{name: {"num_classes": K, ...}}``
    from the data's target sources) to every head and loss config, and ``in_features`` (the trunk's
    channels) to every head config; a one-line error when the data has no such target."""
    targets = config.get("targets") or {}
    if target not in targets or key not in targets[target]:
        raise ConfigError(
            f"{config.get('unique_id') or config.get('name') or 'a head or loss'}: needs the {target!r} target, "
            "which the data does not give "
            f"(it gives {sorted(targets)}); add its source to config.data.sources"
        )
    return targets[target][key]


def require_classy(kind: str, config: Mapping[str, Any], key: str) -> None:
    """The one-line error of :func:`build_classy` when nothing of ``kind`` is registered under
    ``config["name"]``; nothing is built (what a config check before submission calls)."""
    registry = _CLASSY[kind]
    if config.get("name") not in registry:
        raise unknown_name(kind, config.get("name"), list(registry), key + ".name")


def build_classy(kind: str, config: Mapping[str, Any], key: str) -> Any:
    """classy-vision's ``build_<kind>`` (model, head, loss, dataset) with a one-line error for an
    unknown name; a head gets ``unique_id`` (its name) when the config has none."""
    require_classy(kind, config, key)
    config = dict(config)
    if kind == "head":
        config.setdefault("unique_id", config["name"])
    return _CLASSY_BUILD[kind](config)


__all__ = [
    "Registry",
    "REGISTRIES",
    "TRUNKS",
    "WEIGHT_FORMATS",
    "TARGET_SOURCES",
    "COMMENT_ENCODERS",
    "KMEANS",
    "LR_SCHEDULES",
    "ENGINES",
    "BENCHMARK_DATASETS",
    "METRICS",
    "PROTOCOLS",
    "POOLING",
    "build_classy",
    "require_classy",
    "spec",
    "target_size",
    "unknown_name",
    "register_model",
    "register_head",
    "register_loss",
    "register_dataset",
    "register_task",
    "HEAD_REGISTRY",
    "LOSS_REGISTRY",
    "DATASET_REGISTRY",
    "MODEL_REGISTRY",
    "TASK_REGISTRY",
]
