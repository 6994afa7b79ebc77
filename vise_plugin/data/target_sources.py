"""Target sources: what one supervision signal adds to a pretraining image, by name in
:data:`vise_plugin.registry.TARGET_SOURCES` (``config.data.sources``).

A source lists images (``paths``, relative to ``image_root``) with their targets, and can also give
the targets of an image another source lists (``targets_for(path)``), so that several signals
supervise the same images: the first source of ``config.data.sources`` lists the images, the others
add their targets by path (:func:`match_sources` counts the images each of them does not list).
``targets_for`` of a path a source does not list is an :class:`InputError`, except in a source
matched onto another's images, which gives ``empty()`` for them. ``specs()`` describes each target
for the heads and losses that use it (``{"num_classes": K, ...}``); ``empty()`` is the targets of an
image with nothing to learn, which every loss leaves out.

Built with ``from_config(params, data_cfg, run_dir)``: the entry's own parameters, ``config.data``
(whose keys fill in what the entry does not set) and the run folder (for caches). ``check_inputs``
with the same arguments fails in one line, before any work or queueing, when the inputs are missing.
"""

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.tag_table import TagTable
from vise_plugin.errors import ConfigError, InputError
from vise_plugin.labels.store import LabelStore
from vise_plugin.registry import TARGET_SOURCES

logger = logging.getLogger(__name__)

Targets = Dict[str, torch.Tensor]
COMMENT_TARGETS = ("histogram", "uniform")
#: a source matched onto another's images stops the run when it lists none of them or misses more than this share
MAX_UNMATCHED_FRACTION = 0.5
#: the images of the listing source that :func:`match_sources` looks up (evenly spread over its rows)
MATCH_CHECK_ROWS = 100_000


def uniform_comment_target(comment_target: str) -> bool:
    """Whether ``config.data.comment_target`` asks for equal weight on each distinct comment cluster."""
    if comment_target not in COMMENT_TARGETS:
        raise ConfigError(f"config.data.comment_target={comment_target!r}: use one of {', '.join(COMMENT_TARGETS)}")
    return comment_target == "uniform"


def relative_image_path(path: str, image_root: str) -> str:
    """``path`` as a source lists it: relative to ``image_root`` (an absolute path under the root loses
    the root), without ``.`` parts or repeated separators (``./a//b.jpg`` is ``a/b.jpg``)."""
    root = image_root.rstrip("/")
    if root and os.path.isabs(path) and "://" not in root:
        rel = os.path.relpath(path, os.path.abspath(root))
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            path = rel
    elif root and path.startswith(root + "/"):  # a path under a URL root, or a relative path under a relative root
        path = path[len(root) :].lstrip("/")
    return image_key(path)


def image_key(path: str) -> str:
    """How a source keys image ``path``: without ``.`` parts or repeated separators, a URL as it is
    (``os.path.normpath`` would turn ``s3://b/x.jpg`` into ``s3:/b/x.jpg``)."""
    return path if "://" in path else os.path.normpath(path)


class TargetSource:
    """The interface every registered source has (see the module docstring)."""

    image_root: str = ""
    #: set by :func:`match_sources` once it has counted the listing source's images this source does
    #: not list and found them few enough: :meth:`targets_for` then gives :meth:`empty` for them
    unmatched_empty: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def path(self, row: int) -> str:
        raise NotImplementedError

    def targets_at(self, row: int) -> Targets:
        raise NotImplementedError

    def targets_for(self, path: str) -> Targets:
        raise NotImplementedError

    def lists(self, path: str) -> bool:
        """Whether :meth:`targets_for` knows image ``path`` (by default: gives its targets without an
        :class:`InputError`)."""
        try:
            self.targets_for(path)
        except InputError:
            return False
        return True

    def unlisted(self, path: str) -> Targets:
        """:meth:`targets_for` of an image the source does not list: :meth:`empty` when
        ``unmatched_empty``, else an :class:`InputError` naming the path and the source."""
        if self.unmatched_empty:
            return self.empty()
        raise InputError(
            f"{path}: not an image of {self.describe()} (its paths are relative to "
            f"{self.image_root or 'the working directory'})"
        )

    def empty(self) -> Targets:
        raise NotImplementedError

    def specs(self) -> Dict[str, Dict[str, Any]]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


def match_sources(sources: Sequence[TargetSource], max_unmatched: Sequence[Optional[float]] = ()) -> None:
    """Judges, for every source after the first, how many of the first's images (those it adds its
    targets to, by path) it lists: at most :data:`MATCH_CHECK_ROWS` of them, evenly spread, are
    looked up. A source that lists none of them, or misses more than its ``max_unmatched[i]``
    share (default :data:`MAX_UNMATCHED_FRACTION`), stops the run in one :class:`InputError` with up
    to five of the missing paths; otherwise the missing ones are logged and the source gives them
    empty targets (nothing to learn) from then on.
    """
    if len(sources) < 2 or len(sources[0]) == 0:
        return
    first = sources[0]
    rows = np.unique(np.linspace(0, len(first) - 1, num=min(len(first), MATCH_CHECK_ROWS)).round().astype(np.int64))
    paths = [first.path(int(r)) for r in rows]
    checked = f"{len(paths):,} images of {first.describe()}" + (" looked up" if len(paths) < len(first) else "")
    for i, source in enumerate(sources[1:], start=1):
        limit = max_unmatched[i] if i < len(max_unmatched) and max_unmatched[i] is not None else MAX_UNMATCHED_FRACTION
        source.unmatched_empty = False
        missing: List[str] = [p for p in paths if not source.lists(p)]
        if not missing:
            continue
        summary = f"{len(missing):,} of the {checked} are not in it (e.g. {', '.join(missing[:5])})"
        if len(missing) == len(paths) or len(missing) > limit * len(paths):
            raise InputError(
                f"{source.describe()}: {summary}; the sources after the first add their targets to its "
                f"images by relative path, and none matching or more than {limit:.0%} unmatched stops the "
                "run (max_unmatched_fraction of the source's config.data.sources entry)"
            )
        logger.warning("%s: %s; they learn nothing from it", source.describe(), summary)
        source.unmatched_empty = True


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
                "written by vise-labels (tools/generate_labels.py)"
            )
        return path

    @classmethod
    def from_config(
        cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any], run_dir: str = ""
    ) -> "EngagementLabels":
        store = LabelStore(cls.check_inputs(params, data_cfg))
        return cls(
            store,
            _param(params, data_cfg, "image_root") or store.meta.get("image_root", ""),
            _param(params, data_cfg, "comment_target") or "histogram",
        )

    def __len__(self) -> int:
        return len(self.store)

    def path(self, row: int) -> str:
        return self.store.images[row]

    def targets_at(self, row: int) -> Targets:
        return {
            "comments": torch.from_numpy(self.store.comment_histogram(row, self.uniform)),
            "reactions": torch.tensor(int(self.store.reactions[row]), dtype=torch.int64),
        }

    def row_of(self, path: str) -> Optional[int]:
        """The store row of image ``path`` (see :func:`relative_image_path`), None when the store has none."""
        if self._rows is None:  # only when another source lists the images: one dict over the store's paths
            self._rows = {image_key(self.store.images[i]): i for i in range(len(self.store))}
        return self._rows.get(relative_image_path(path, self.image_root))

    def lists(self, path: str) -> bool:
        return self.row_of(path) is not None

    def targets_for(self, path: str) -> Targets:
        row = self.row_of(path)
        return self.unlisted(path) if row is None else self.targets_at(row)

    def empty(self) -> Targets:
        return {
            "comments": torch.zeros(self.store.num_classes("comments")),
            "reactions": torch.tensor(-1, dtype=torch.int64),
        }

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
        self._paths = {image_key(p): p for p in table.paths}  # normalised path -> the list's spelling

    @classmethod
    def check_inputs(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> None:
        for key in ("list", "vocab"):
            value = _param(params, data_cfg, key, "tags")
            if not value:
                raise ConfigError(
                    "config.data.sources has web_tags: set config.data.tags.list=<.pkl or .jsonl> and "
                    "config.data.tags.vocab=<one tag per line>"
                )
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
        return {"tags": self.table.target(self.table.paths[row])}

    def lists(self, path: str) -> bool:
        return relative_image_path(path, self.image_root) in self._paths

    def targets_for(self, path: str) -> Targets:
        listed = self._paths.get(relative_image_path(path, self.image_root))
        return self.unlisted(path) if listed is None else {"tags": self.table.target(listed)}

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
    """The sources of ``config.data.sources``, each from the registry, in order, the others matched
    onto the first's images (:func:`match_sources`; an entry's ``max_unmatched_fraction`` sets its share)."""
    built, max_unmatched = [], []
    for i, entry in enumerate(source_entries(sources)):
        cls = TARGET_SOURCES.get(entry["name"], f"config.data.sources[{i}]")
        limit = entry.get("max_unmatched_fraction")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1
        ):
            raise ConfigError(f"config.data.sources[{i}].max_unmatched_fraction={limit!r}: use a share from 0 to 1")
        max_unmatched.append(limit)
        params = {k: v for k, v in entry.items() if k not in ("name", "max_unmatched_fraction")}
        built.append(cls.from_config(params, data_cfg, run_dir))
    match_sources(built, max_unmatched)
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
