"""Training data as tar shards (the WebDataset layout) and their indexed reader.

A shard folder holds ``shard-NNNNNN.tar`` files of about ``config.shards.shard_bytes`` each. A sample
is two adjacent members: ``<key>.jpg`` (the image file's bytes as stored) and ``<key>.json``
(``{"id", "row", "image", "comments": [[cluster, count], ...], "reactions": r}``), key = the label
store row. Beside each shard, ``shard-NNNNNN.idx.npy`` ``(n, 5)`` int64 (row, jpg offset, jpg size,
json offset, json size) and ``shard-NNNNNN.json`` (its summary: rows, image paths, sha256, samples
skipped), and for the whole set ``manifest.json`` (shards, sample counts, checksums, the tasks' k).

:class:`TarShards` reads a sample where its index says (its two adjacent members, through one buffered file), so the
project's seeded, resumable batch sampler keeps working on shards: exact mid-epoch resume and per-image
augmentation seeds, whatever the number of workers. Samples are grouped by shard for locality
(:attr:`TarShards.groups`).
"""

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.open_files import OpenFiles
from vise_plugin.data.target_sources import TargetSource, image_key, relative_image_path, uniform_comment_target
from vise_plugin.errors import ConfigError, InputError, error_text
from vise_plugin.labels.store import comment_histogram
from vise_plugin.registry import TARGET_SOURCES

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "vise-shards/1"
INDEX_COLUMNS = ("row", "jpg_offset", "jpg_size", "json_offset", "json_size")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def sample_key(row: int) -> str:
    """The member name stem of label store row ``row``'s sample."""
    return f"{row:09d}"


def read_manifest(folder: str) -> Dict[str, Any]:
    """``<folder>/manifest.json``; a one-line error when the folder is not a finished shard set."""
    path = os.path.join(folder, MANIFEST)
    advice = "point config.data.shards=<folder> at one written by vise-shards (tools/write_shards.py)"
    try:
        found = g_pathmgr.exists(path)
    except NotImplementedError:  # a handler that only fetches (iopath's HTTP one): the open below tells
        found = True
    if not found:
        raise ConfigError(f"shard manifest not found: {path}; {advice}")
    try:
        with g_pathmgr.open(path) as f:
            manifest = json.load(f)
    except OSError as e:
        raise ConfigError(f"shard manifest not found: {path} ({error_text(e)}); {advice}") from None
    except ValueError as e:
        raise InputError(f"{path}: not readable as JSON ({e}); write the shards again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{path}: format {found!r}, expected {FORMAT}")
    for key in ("tasks", "shards"):
        if key not in manifest:
            raise InputError(f"{path}: no {key!r} entry; write the shards again")
    return manifest


def report_damaged_shard(reported: set, path: str, what: str) -> None:
    """Logs a damaged shard once per process (``reported``: the shards already logged); its remaining
    samples are then skipped and counted one by one."""
    if path not in reported:
        reported.add(path)
        logger.warning("%s: %s; its remaining samples are skipped", path, what)


class ShardTargets:
    """The VisE targets of shard samples (``comments``: ``(K,)`` float32 histogram, ``reactions``: int64
    cluster), for the tasks of a shard folder's manifest and ``config.data.comment_target``."""

    def __init__(self, manifest: Mapping[str, Any], comment_target: str = "histogram", where: str = MANIFEST):
        try:
            self.tasks = {t: int(manifest["tasks"][t]["k"]) for t in ("comments", "reactions")}
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: tasks.comments.k and tasks.reactions.k are needed ({e!r})") from None
        self.uniform = uniform_comment_target(comment_target)

    def of(self, meta: Any, where: str = "") -> Dict[str, torch.Tensor]:
        """The targets of a sample's ``.json`` description; :class:`InputError` naming ``where`` when it
        lacks them."""
        try:
            comments = comment_histogram(meta["comments"], self.tasks["comments"], self.uniform)
            return {
                "comments": torch.from_numpy(comments),
                "reactions": torch.tensor(int(meta["reactions"]), dtype=torch.int64),
            }
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise InputError(f"{where}: unreadable sample description ({e!r})") from None

    def empty(self) -> Dict[str, torch.Tensor]:
        return {"comments": torch.zeros(self.tasks["comments"]), "reactions": torch.tensor(-1, dtype=torch.int64)}

    def specs(self) -> Dict[str, Dict[str, Any]]:
        return {task: {"num_classes": k} for task, k in self.tasks.items()}


@TARGET_SOURCES.register("tar_shards")
class TarShards(TargetSource):
    """The samples of a shard folder with their VisE targets (``comments``, ``reactions``), read
    through the per-shard indexes: a map-style source, so :class:`ResumableBatchSampler` applies.
    The shards are the ones the manifest lists, by its names; a shard whose index does not hold the
    manifest's number of samples is logged once and its samples are skipped (:class:`InputError`).

    Args:
        folder: the shard folder (any iopath location; remote shards are fetched through
            ``g_pathmgr.get_local_path``, which caches them).

    From a config: ``folder`` (default ``config.data.shards``) and ``comment_target`` (as for
    :class:`EngagementLabels`).
    """

    def __init__(self, folder: str, comment_target: str = "histogram"):
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.targets = ShardTargets(self.manifest, comment_target, os.path.join(folder, MANIFEST))
        self.image_root = ""
        self.shards = [s["name"] for s in self.manifest["shards"]]
        self.counts = np.array([s["samples"] for s in self.manifest["shards"]], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])
        self._indexes: Dict[int, np.ndarray] = {}
        self._images: Dict[int, List[str]] = {}
        self._files = OpenFiles()
        self._reported: set = set()
        self._rows: Optional[Dict[str, int]] = None

    @classmethod
    def check_inputs(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> str:
        folder = params.get("folder") or data_cfg.get("shards")
        if not folder:
            raise ConfigError("config.data.sources has tar_shards: set config.data.shards=<folder of manifest.json>")
        read_manifest(folder)
        return folder

    @classmethod
    def from_config(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any], run_dir: str = "") -> "TarShards":
        return cls(
            cls.check_inputs(params, data_cfg),
            params.get("comment_target") or data_cfg.get("comment_target") or "histogram",
        )

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def groups(self) -> List[int]:
        """Samples per shard, in order: consecutive items of one group are in one file."""
        return self.counts.tolist()

    def locate(self, i: int) -> Tuple[int, int]:
        """``(shard index, position in the shard)`` of sample ``i``."""
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return shard, i - int(self.starts[shard])

    def _path(self, shard: int, ext: str) -> str:
        """``<folder>/<the manifest's name of shard ``shard``><ext>``."""
        return os.path.join(self.folder, self.shards[shard] + ext)

    def _index(self, shard: int) -> np.ndarray:
        """Shard ``shard``'s index, ``(n, 5)`` int64; :class:`InputError` naming the file when it cannot
        be read, or when ``n`` is not the manifest's count (the shard is then skipped: its samples may
        not be the ones the manifest lists)."""
        if shard not in self._indexes:
            try:
                index = np.load(self._local(self._path(shard, ".idx.npy")), mmap_mode="r")
            except (OSError, ValueError) as e:
                self._report(self._path(shard, ".idx.npy"), f"cannot be read ({error_text(e)})")
                raise InputError(f"{self._path(shard, '.idx.npy')}: cannot be read") from None
            if len(index) != self.counts[shard]:
                what = f"its index holds {len(index)} samples, {MANIFEST} lists {self.counts[shard]}"
                self._report(self._path(shard, ".tar"), what)
                raise InputError(f"{self._path(shard, '.tar')}: {what}")
            self._indexes[shard] = index
        return self._indexes[shard]

    @staticmethod
    def _local(path: str) -> str:
        return path if "://" not in path else g_pathmgr.get_local_path(path)

    def _file(self, shard: int):
        path = self._path(shard, ".tar")
        return self._files.get(shard, self._local(path), path, self._reported)

    def _report(self, path: str, what: str) -> None:
        report_damaged_shard(self._reported, path, what)

    def path(self, i: int) -> str:
        """The sample's original image path (relative to the label store's image root)."""
        shard, pos = self.locate(i)
        if shard not in self._images:
            with g_pathmgr.open(self._path(shard, ".json")) as f:
                self._images[shard] = json.load(f)["images"]
        return self._images[shard][pos]

    def describe(self) -> str:
        return f"tar shards {self.folder} ({len(self.shards)} shards)"

    def where(self, i: int) -> str:
        """``<folder>/shard-NNNNNN.tar#<key>`` (``#sample <position>`` when the shard's index is unreadable)."""
        shard, pos = self.locate(i)
        try:
            key = sample_key(int(self._index(shard)[pos, 0]))
        except InputError:
            key = f"sample {pos}"
        return f"{self._path(shard, '.tar')}#{key}"

    def _sample(self, i: int, with_image: bool = True) -> Tuple[Optional[bytes], Dict[str, torch.Tensor]]:
        """Sample ``i``'s image bytes (None without ``with_image``: only its ``.json`` is read) and
        targets: two reads of adjacent members, through one buffered file (no copy of the image)."""
        shard, pos = self.locate(i)
        _, jpg_offset, jpg_size, json_offset, json_size = (int(v) for v in self._index(shard)[pos])
        f = self._file(shard)
        image = None
        if with_image:
            f.seek(jpg_offset)
            image = f.read(jpg_size)
        f.seek(json_offset)
        described = f.read(json_size)
        if len(described) < json_size or (with_image and len(image) < jpg_size):
            self._report(
                self._path(shard, ".tar"),
                f"truncated shard (sample {self.where(i)} needs bytes up to {json_offset + json_size})",
            )
            raise InputError(f"{self.where(i)}: truncated shard")
        where = self.where(i)
        try:
            meta = json.loads(described)
        except ValueError:
            raise InputError(f"{where}: unreadable sample description") from None
        return image, self.targets.of(meta, where)

    def read(self, i: int) -> Tuple[bytes, Dict[str, torch.Tensor]]:
        """Sample ``i``'s image bytes and targets (see :meth:`_sample`); :class:`InputError` naming the shard
        when the file is cut short or the sample cannot be parsed."""
        return self._sample(i)

    def targets_at(self, i: int) -> Dict[str, torch.Tensor]:
        """Sample ``i``'s targets, reading only its ``.json`` member."""
        return self._sample(i, with_image=False)[1]

    def row_of(self, path: str) -> Optional[int]:
        """The sample of image ``path`` (see :func:`relative_image_path`), None when no shard holds it: one
        dict over every shard's image paths (their summaries), built on first use, when another source lists
        the images."""
        if self._rows is None:
            self._rows = {}
            for shard in range(len(self.shards)):
                start = int(self.starts[shard])
                self.path(start)  # loads the shard's image paths
                self._rows.update({image_key(p): start + k for k, p in enumerate(self._images[shard])})
        return self._rows.get(relative_image_path(path, self.image_root))

    def lists(self, path: str) -> bool:
        return self.row_of(path) is not None

    def targets_for(self, path: str) -> Dict[str, torch.Tensor]:
        row = self.row_of(path)
        return self.unlisted(path) if row is None else self.targets_at(row)

    def empty(self) -> Dict[str, torch.Tensor]:
        return self.targets.empty()

    def specs(self) -> Dict[str, Dict[str, Any]]:
        return self.targets.specs()


def sample_json(store: Any, row: int) -> bytes:
    """The ``<key>.json`` member of store row ``row``."""
    pairs = store.comment_pairs(row)
    return json.dumps(
        {
            "id": store.ids[row],
            "row": int(row),
            "image": store.images[row],
            "comments": [[int(c), int(n)] for c, n in pairs],
            "reactions": int(store.reactions[row]),
        },
        sort_keys=True,
    ).encode()
