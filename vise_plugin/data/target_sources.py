"""Target sources: what one supervision signal adds to a pretraining image, by name in
:data:`vise_plugin.registry.TARGET_SOURCES` (``config.data.sources``).

A source lists images (``paths``, relative to ``image_root``) with their targets, and can also give
the targets of an image another source lists (``targets_for(path)``), so that several signals
supervise the same images: the first source of ``config.data.sources`` lists the images, the others
add their targets by path. ``specs()`` describes each target for the heads and losses that use it
(``{"num_classes": K, ...}``); ``empty()`` is the targets of an image with nothing to learn, which
every loss leaves out.

Built with ``from_config(params, data_cfg, run_dir)``: the entry's own parameters, ``config.data``
(whose keys fill in what the entry does not set) and the run folder (for caches). ``check_inputs``
with the same arguments fails in one line, before any work or queueing, when the inputs are missing.
"""

import os
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.tag_table import TagTable
from vise_plugin.errors import ConfigError
from vise_plugin.labels.store import LabelStore
from vise_plugin.registry import TARGET_SOURCES

Targets = Dict[str, torch.Tensor]
COMMENT_TARGETS = ("histogram", "uniform")


def uniform_comment_target(comment_target: str) -> bool:
    """Whether ``config.data.comment_target`` asks for equal weight on each distinct comment cluster."""
    if comment_target not in COMMENT_TARGETS:
        raise ConfigError(f"config.data.comment_target={comment_target!r}: use one of {', '.join(COMMENT_TARGETS)}")
    return comment_target == "uniform"


class TargetSource:
    """The interface every registered source has (see the module docstring)."""

    image_root: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def path(self, row: int) -> str:
        raise NotImplementedError

    def targets_at(self, row: int) -> Targets:
        raise NotImplementedError

    def targets_for(self, path: str) -> Targets:
        raise NotImplementedError

    def empty(self) -> Targets:
        raise NotImplementedError

    def specs(self) -> Dict[str, Dict[str, Any]]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


def empty_targets(sources: Sequence[TargetSource]) -> Targets:
    """Every source's :meth:`TargetSource.empty` targets, in one dict (an item with nothing to learn)."""
    empty: Targets = {}
    for source in sources:
        empty.update(source.empty())
    return empty


def _param(params: Mapping[str, Any], data_cfg: Mapping[str, Any], key: str, section: Optional[str] = None):
    """``params[key]``, else ``config.data[section][key]`` (or ``config.data[key]``)."""
    if params.get(key) is not None:
        return params[key]
    node = (data_cfg.get(section) or {}) if section else data_cfg
    return node.get(key)


@TARGET_SOURCES.register("engagement_labels")
class EngagementLabels(TargetSource):
    """VisE's targets from a label store: ``comments`` ``(Kc,)`` float, the post's normalised comment
    cluster histogram (all zero: no comments), and ``reactions`` ``()`` int64, its reaction cluster
    (-1: none).

    Args:
        store: an open :class:`LabelStore` (memory-mapped).
        image_root: folder of the store's relative image paths.
        comment_target: ``histogram`` (the comment clusters' normalised counts) or ``uniform`` (1/n on
            each of the n distinct clusters of the post's comments).

    From a config: ``labels`` (default ``config.data.labels``), ``image_root`` (default
    ``config.data.image_root``, else the store's own) and ``comment_target`` (``config.data.comment_target``).
    """

    def __init__(self, store: LabelStore, image_root: str, comment_target: str = "histogram"):
        self.store = store
        self.image_root = image_root
        self.uniform = uniform_comment_target(comment_target)
        self._rows: Optional[Dict[str, int]] = None

    @classmethod
    def check_inputs(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> str:
        path = _param(params, data_cfg, "labels")
        if not path or not g_pathmgr.exists(os.path.join(path, "meta.json")):
            raise ConfigError(
                f"label store not found: {path or '(unset)'}; point config.data.labels=<folder> at one "
                "written by tools/generate_labels.py")
        return path

    @classmethod
    def from_config(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any], run_dir: str = "") -> "EngagementLabels":
        store = LabelStore(cls.check_inputs(params, data_cfg))
        return cls(store, _param(params, data_cfg, "image_root") or store.meta.get("image_root", ""),
                   _param(params, data_cfg, "comment_target") or "histogram")

    def __len__(self) -> int:
        return len(self.store)

    def path(self, row: int) -> str:
        return self.store.images[row]

    def targets_at(self, row: int) -> Targets:
        return {"comments": torch.from_numpy(self.store.comment_histogram(row, self.uniform)),
                "reactions": torch.tensor(int(self.store.reactions[row]), dtype=torch.int64)}

    def targets_for(self, path: str) -> Targets:
        if self._rows is None:  # only when another source lists the images: one dict over the store's paths
            self._rows = {self.store.images[i]: i for i in range(len(self.store))}
        row = self._rows.get(path)
        return self.empty() if row is None else self.targets_at(row)

    def empty(self) -> Targets:
        return {"comments": torch.zeros(self.store.num_classes("comments")),
                "reactions": torch.tensor(-1, dtype=torch.int64)}

    def specs(self) -> Dict[str, Dict[str, Any]]:
        return {task: {"num_classes": self.store.num_classes(task)} for task in ("comments", "reactions")}

    def describe(self) -> str:
        return f"label store {self.store.folder}"


@TARGET_SOURCES.register("web_tags")
class WebTags(TargetSource):
    """Web tags in the style of EmotionNet: ``tags`` ``(K,)`` float, 1/n on each of the image's n
    tags (all zero: none). ``specs()["tags"]`` also holds ``embeddings``, the ``(K, D)`` text
    embeddings of the vocabulary, when a text encoder is given.

    Args:
        table: the tag list and vocabulary.
        image_root: folder the list's paths start from.
        embeddings: ``(K, D)`` float32 unit vectors of the tags, or None.

    From a config: ``list``, ``vocab``, ``image_root`` (default the list's folder) and
    ``text_encoder`` (an installed sentence-encoder package), defaults from ``config.data.tags``; the
    embeddings are cached in the run folder.
    """

    def __init__(self, table: TagTable, image_root: str, embeddings: Optional[np.ndarray] = None):
        self.table = table
        self.image_root = image_root
        self.embeddings = None if embeddings is None else torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)

    @classmethod
    def check_inputs(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> None:
        for key in ("list", "vocab"):
            value = _param(params, data_cfg, key, "tags")
            if not value:
                raise ConfigError("config.data.sources has web_tags: set config.data.tags.list=<.pkl or .jsonl> and "
                                  "config.data.tags.vocab=<one tag per line>")
            if not g_pathmgr.exists(value):
                raise ConfigError(f"config.data.tags.{key}: {value} not found")

    @classmethod
    def from_config(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any], run_dir: str = "") -> "WebTags":
        from vise_plugin.data.tag_embeddings import tag_text_embeddings

        cls.check_inputs(params, data_cfg)
        tag_list = _param(params, data_cfg, "list", "tags")
        table = TagTable.read(tag_list, _param(params, data_cfg, "vocab", "tags"))
        encoder = _param(params, data_cfg, "text_encoder", "tags")
        embeddings = tag_text_embeddings(table.vocabulary, encoder, run_dir or ".") if encoder else None
        return cls(table, _param(params, data_cfg, "image_root", "tags") or os.path.dirname(tag_list), embeddings)

    def __len__(self) -> int:
        return len(self.table)

    def path(self, row: int) -> str:
        return self.table.paths[row]

    def targets_at(self, row: int) -> Targets:
        return self.targets_for(self.table.paths[row])

    def targets_for(self, path: str) -> Targets:
        return {"tags": self.table.target(path)}

    def empty(self) -> Targets:
        return {"tags": torch.zeros(self.table.num_tags)}

    def specs(self) -> Dict[str, Dict[str, Any]]:
        spec: Dict[str, Any] = {"num_classes": self.table.num_tags}
        if self.embeddings is not None:
            spec["embeddings"] = self.embeddings
        return {"tags": spec}

    def describe(self) -> str:
        return f"tag list {self.table.source}"


def source_entries(sources: Sequence[Any]) -> list:
    """``config.data.sources`` as ``[{"name": ..., <parameters>}]`` (a bare name is an entry without parameters)."""
    from vise_plugin.registry import spec

    return [spec(s, f"config.data.sources[{i}]") for i, s in enumerate(sources)]


def build_target_sources(sources: Sequence[Any], data_cfg: Mapping[str, Any], run_dir: str = "") -> list:
    """The sources of ``config.data.sources``, each from the registry, in order."""
    built = []
    for i, entry in enumerate(source_entries(sources)):
        cls = TARGET_SOURCES.get(entry["name"], f"config.data.sources[{i}]")
        built.append(cls.from_config({k: v for k, v in entry.items() if k != "name"}, data_cfg, run_dir))
    return built


def check_target_sources(sources: Sequence[Any], data_cfg: Mapping[str, Any]) -> None:
    """Each source's ``check_inputs``: a missing input fails in one line before any work."""
    if not sources:
        raise ConfigError("config.data.sources is empty: name at least one target source, e.g. [engagement_labels]")
    for i, entry in enumerate(source_entries(sources)):
        cls = TARGET_SOURCES.get(entry["name"], f"config.data.sources[{i}]")
        check = getattr(cls, "check_inputs", None)
        if check is not None:
            check({k: v for k, v in entry.items() if k != "name"}, data_cfg)
