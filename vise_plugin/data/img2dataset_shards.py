"""Pretraining straight from img2dataset's WebDataset output, joined to a label store by post id.

img2dataset (``--output_format webdataset --save_additional_columns '["post_id"]'``) writes a folder
of ``NNNNN.tar``, each beside ``NNNNN.parquet`` (one row per URL of the shard, failed downloads
included: ``status`` is ``success``, ``failed_to_download`` or ``failed_to_resize``) and
``NNNNN_stats.json``. A tar holds the successful samples only, as adjacent members ``<key>.jpg`` and
``<key>.json`` (``{"post_id", "url", "key", "status", ...}``), sometimes with ``<key>.txt``.

:class:`Img2DatasetShards` reads these tars in place. Each tar gets an index, built once by walking its
headers (only the small ``.json`` members are read) and cached as
``<index_dir>/<tar stem>.<fingerprint>.vise.npz``::

    offsets    (n, 2) int64   image member data offset and size, the kept samples in tar order
    rows       (n,)   int64   their label store rows
    keys       (n,)   int64   their keys (``int(key)``; -1 for a key that is not a number)
    key_width             ()  int64   the keys' length in the member names (img2dataset zero-pads them)
    version, tar_size, tar_mtime_ns   ()  int64   what a cached index is checked against
    in_tar, kept, failed, unlabelled, no_image, unreadable, truncated   () int64   the counts (see :func:`index_tar`)

``fingerprint`` names the label store and the id field (a new store or ``id_column`` gets new
indexes); a tar whose size or modification time changed is indexed again.
"""

import hashlib
import json
import logging
import os
import re
import tarfile
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from tqdm import tqdm

from vise_plugin.data.open_files import OpenFiles
from vise_plugin.data.tar_shards import report_damaged_shard
from vise_plugin.data.target_sources import EngagementLabels, Targets, TargetSource, _param
from vise_plugin.errors import ConfigError, InputError, error_text
from vise_plugin.labels.store import LabelStore
from vise_plugin.registry import TARGET_SOURCES

logger = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX_SUFFIX = ".vise.npz"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # img2dataset's --encode_format choices
#: what a tar's index counts, in the order the summary line names them
COUNTS = ("in_tar", "kept", "failed", "unlabelled", "no_image", "unreadable", "truncated")
MAX_OPEN_FILES = 16
#: the shard indexes a process keeps loaded
MAX_LOADED_INDEXES = 64
_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # WebDataset's split of a member name into key and suffix


def store_fingerprint(store: LabelStore, id_column: str) -> str:
    """12 hex digits naming ``store`` (its meta.json ``plan_sha256`` and ``sha256`` entries) and ``id_column``."""
    named = json.dumps([store.meta.get("plan_sha256"), store.meta.get("sha256"), id_column], sort_keys=True)
    return hashlib.sha256(named.encode()).hexdigest()[:12]


def default_index_dir(folder: str, run_dir: str = "") -> str:
    """Where indexes go when ``config.data.img2dataset_index`` is null: beside the tars when that
    folder is writable, else ``<run_dir>/img2dataset_index``."""
    if os.access(folder, os.W_OK):
        return folder
    if not run_dir:
        raise ConfigError(
            f"config.data.img2dataset_index: {folder} is not writable; set "
            "config.data.img2dataset_index=<a writable folder> for the shard indexes"
        )
    return os.path.join(run_dir, "img2dataset_index")


def failed_downloads(parquet: str) -> int:
    """Rows of img2dataset's shard table ``parquet`` whose ``status`` is not ``success`` (0 when the file is
    absent or unreadable, which is logged)."""
    if not os.path.exists(parquet):
        return 0
    try:
        import pyarrow.parquet as pq

        status = pq.read_table(parquet, columns=["status"]).column("status").to_pylist()
    except Exception as e:  # pyarrow missing, or any of its errors about the file
        logger.warning("%s: failed downloads not counted (%s)", parquet, error_text(e))
        return 0
    return sum(s != "success" for s in status)


class _Sample:
    """The members of one sample while a tar is walked: image data location, parsed description."""

    def __init__(self, key: str):
        self.key, self.image, self.meta, self.unreadable = key, None, None, False


def index_tar(tar: str, id_rows: Mapping[str, int], id_column: str) -> Dict[str, np.ndarray]:
    """The index of ``tar`` (the arrays of the module docstring): its tar headers are walked, the
    ``.json`` members read, the image data skipped. A tar cut short keeps the samples before the cut
    (logged). Counts: ``in_tar`` samples (members of one key), ``kept``, ``failed`` (the rows of the
    tar's ``.parquet`` whose status is not success, or the tar's own such samples when they are more),
    ``unlabelled`` (no ``id_column`` field, or an id ``id_rows`` lacks), ``no_image``, ``unreadable``
    (a ``.json`` that does not parse) and ``truncated`` (1: the tar is cut short)."""
    size = os.stat(tar).st_size
    counts = dict.fromkeys(COUNTS, 0)
    offsets: List[Tuple[int, int]] = []
    rows: List[int] = []
    keys: List[int] = []
    widths = {0}
    tar_failed = 0

    def close(sample: Optional[_Sample]) -> None:
        nonlocal tar_failed
        if sample is None:
            return
        counts["in_tar"] += 1
        meta = sample.meta
        row = id_rows.get(str(meta[id_column])) if isinstance(meta, dict) and meta.get(id_column) is not None else None
        if sample.unreadable:
            counts["unreadable"] += 1
        elif isinstance(meta, dict) and meta.get("status", "success") != "success":
            tar_failed += 1
        elif sample.image is None:
            counts["no_image"] += 1
        elif row is None:
            counts["unlabelled"] += 1
        else:
            offsets.append(sample.image)
            rows.append(row)
            keys.append(int(sample.key) if sample.key.isdigit() else -1)
            widths.add(len(sample.key))

    sample: Optional[_Sample] = None
    with open(tar, "rb") as f:
        try:
            archive = tarfile.open(fileobj=f, mode="r:")
            while True:
                member = archive.next()
                if member is None:
                    f.seek(archive.offset)
                    end = f.read(tarfile.BLOCKSIZE)  # an end-of-archive block, unless the tar was cut short
                    if len(end) < tarfile.BLOCKSIZE or any(end):
                        raise tarfile.ReadError("no end-of-archive block")
                    break
                archive.members.clear()  # the walk keeps no headers
                parts = _MEMBER.match(member.name) if member.isfile() else None
                if parts is None:
                    continue
                key, ext = parts.group(1), parts.group(2).lower()
                if sample is None or sample.key != key:
                    close(sample)
                    sample = _Sample(key)
                if member.offset_data + member.size > size:
                    sample = None  # its members are not all there
                    raise tarfile.ReadError("unexpected end of data")
                if ext in IMAGE_EXTENSIONS:
                    sample.image = (member.offset_data, member.size)
                elif ext == "json":
                    f.seek(member.offset_data)
                    try:
                        sample.meta = json.loads(f.read(member.size))
                    except ValueError:
                        sample.unreadable = True
        except (tarfile.ReadError, EOFError) as e:
            counts["truncated"] = 1
            logger.warning(
                "%s: cut short or damaged (%s); only its samples before that are indexed", tar, error_text(e)
            )
    close(sample)
    counts["kept"] = len(rows)
    counts["failed"] = max(failed_downloads(os.path.splitext(tar)[0] + ".parquet"), tar_failed)
    return {
        "offsets": np.asarray(offsets, dtype=np.int64).reshape(-1, 2),
        "rows": np.asarray(rows, dtype=np.int64),
        "keys": np.asarray(keys, dtype=np.int64),
        "key_width": np.int64(max(widths)),
        **{name: np.int64(v) for name, v in counts.items()},
    }


def _tar_stamp(tar: str) -> Tuple[int, int]:
    stat = os.stat(tar)
    return int(stat.st_size), int(stat.st_mtime_ns)


def write_index(path: str, index: Dict[str, np.ndarray], stamp: Tuple[int, int]) -> None:
    """``index`` with ``version``, ``tar_size`` and ``tar_mtime_ns`` to ``path``, through a temporary
    file of this process (ranks indexing the same tar at once each rename a whole file)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(
            f, version=np.int64(INDEX_VERSION), tar_size=np.int64(stamp[0]), tar_mtime_ns=np.int64(stamp[1]), **index
        )
    os.replace(tmp, path)


def read_index_counts(path: str, stamp: Tuple[int, int]) -> Optional[Dict[str, int]]:
    """The counts and ``key_width`` of the index at ``path``; None when it is missing, unreadable, of
    another version or of another state of its tar (``stamp``: size, mtime_ns)."""
    try:
        with np.load(path) as index:
            if (int(index["version"]), int(index["tar_size"]), int(index["tar_mtime_ns"])) != (INDEX_VERSION, *stamp):
                return None
            return {name: int(index[name]) for name in (*COUNTS, "key_width")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a half-written or foreign file: built again
        return None


@TARGET_SOURCES.register("img2dataset")
class Img2DatasetShards(TargetSource):
    """The samples of img2dataset's WebDataset tars whose post id the label store has, with its VisE
    targets (``comments`` ``(Kc,)`` float32, ``reactions`` ``()`` int64, as :class:`EngagementLabels`
    gives them). A map-style source read through the per-tar indexes (one seek and one read per image),
    so :class:`ResumableBatchSampler` applies; samples are grouped by tar (:attr:`groups`).

    Args:
        folder: the local folder of img2dataset's ``*.tar`` (all of them, sorted by name).
        store: the label store the ids are joined to.
        id_column: the ``.json`` field holding the post id (img2dataset's ``--save_additional_columns``).
        comment_target: ``histogram`` or ``uniform`` (see :class:`EngagementLabels`).
        index_dir: where the indexes are cached; None: beside the tars (which must then be writable).
        image_root: root of the store's image paths, which other sources' paths are matched against
            (None: the store's own).

    From a config: ``folder`` (default ``config.data.img2dataset``), ``id_column``
    (``config.data.img2dataset_id``), ``index_dir`` (``config.data.img2dataset_index``; null: beside the
    tars when writable, else ``<run_dir>/img2dataset_index``), ``labels``, ``image_root`` and
    ``comment_target`` (as for :class:`EngagementLabels`).
    """

    def __init__(
        self,
        folder: str,
        store: LabelStore,
        id_column: str = "post_id",
        comment_target: str = "histogram",
        index_dir: Optional[str] = None,
        image_root: Optional[str] = None,
    ):
        self.folder = folder
        self.labels = EngagementLabels(
            store, store.meta.get("image_root", "") if image_root is None else image_root, comment_target
        )
        self.image_root = self.labels.image_root
        self.id_column = id_column
        self.tars = list_tars(folder, "folder")
        self.index_dir = default_index_dir(folder) if index_dir is None else index_dir
        self.fingerprint = store_fingerprint(store, id_column)
        shard_counts = self._index_all()
        self.key_widths = [c["key_width"] for c in shard_counts]
        kept = np.array([c["kept"] for c in shard_counts], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(kept)])
        self._groups = kept.tolist()
        self.counts = {"tars": len(self.tars), **{name: sum(c[name] for c in shard_counts) for name in COUNTS}}
        logger.info("%s", self.summary())
        self._indexes: Dict[int, Dict[str, np.ndarray]] = {}
        self._files = OpenFiles(MAX_OPEN_FILES)
        self._reported: set = set()
        self._samples: Optional[np.ndarray] = None

    @classmethod
    def check_inputs(cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any]) -> str:
        folder = params.get("folder") or data_cfg.get("img2dataset")
        if not folder:
            raise ConfigError(
                "config.data.sources has img2dataset: set config.data.img2dataset=<img2dataset's --output_folder>"
            )
        list_tars(folder, "config.data.img2dataset")
        EngagementLabels.check_inputs(params, data_cfg)
        return folder

    @classmethod
    def from_config(
        cls, params: Mapping[str, Any], data_cfg: Mapping[str, Any], run_dir: str = ""
    ) -> "Img2DatasetShards":
        folder = cls.check_inputs(params, data_cfg)
        store = LabelStore(EngagementLabels.check_inputs(params, data_cfg))
        index_dir = params.get("index_dir") or data_cfg.get("img2dataset_index") or default_index_dir(folder, run_dir)
        return cls(
            folder,
            store,
            params.get("id_column") or data_cfg.get("img2dataset_id") or "post_id",
            _param(params, data_cfg, "comment_target") or "histogram",
            index_dir,
            _param(params, data_cfg, "image_root"),
        )

    def index_path(self, shard: int) -> str:
        stem = os.path.splitext(os.path.basename(self.tars[shard]))[0]
        return os.path.join(self.index_dir, f"{stem}.{self.fingerprint}{INDEX_SUFFIX}")

    def _index_all(self) -> List[Dict[str, int]]:
        """Every tar's counts, indexing those without a current index (the id -> row map is built only then)."""
        stamps = [_tar_stamp(t) for t in self.tars]
        counts: List[Optional[Dict[str, int]]] = [
            read_index_counts(self.index_path(s), stamps[s]) for s in range(len(self.tars))
        ]
        missing = [s for s, c in enumerate(counts) if c is None]
        if missing:
            try:
                os.makedirs(self.index_dir, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"config.data.img2dataset_index: cannot create {self.index_dir} ({error_text(e)})"
                ) from None
            store = self.labels.store
            id_rows = {store.ids[i]: i for i in range(len(store))}
            for s in tqdm(
                missing, desc=f"indexing {self.folder}", unit="tar", dynamic_ncols=True, disable=len(missing) <= 4
            ):
                index = index_tar(self.tars[s], id_rows, self.id_column)
                try:
                    write_index(self.index_path(s), index, stamps[s])
                except OSError as e:
                    raise ConfigError(
                        f"config.data.img2dataset_index: cannot write {self.index_path(s)} ({error_text(e)})"
                    ) from None
                counts[s] = {name: int(index[name]) for name in (*COUNTS, "key_width")}
        return counts  # type: ignore[return-value]

    def summary(self) -> str:
        """One line: the samples kept and why the others were left out."""
        c = self.counts
        line = (
            f"img2dataset shards {self.folder}: {c['kept']:,} samples kept of {c['in_tar']:,} in {c['tars']} tars; "
            f"{c['failed']:,} failed downloads, {c['unlabelled']:,} without labels, {c['no_image']:,} without an "
            f"image, {c['unreadable']:,} with an unreadable description skipped"
        )
        if c["truncated"]:
            line += f"; {c['truncated']} tars cut short (indexed up to the cut)"
        return line

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def groups(self) -> List[int]:
        """Kept samples per tar, in order: consecutive items of one group are in one file."""
        return self._groups

    def locate(self, i: int) -> Tuple[int, int]:
        """``(tar index, position among its kept samples)`` of sample ``i``."""
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return shard, i - int(self.starts[shard])

    def _index(self, shard: int) -> Dict[str, np.ndarray]:
        """Tar ``shard``'s ``offsets``, ``rows`` and ``keys``, loaded on first use; :class:`InputError`
        naming the file when the index cannot be read or no longer holds the samples counted at the start
        (the tar was indexed again since: its samples are skipped)."""
        if shard not in self._indexes:
            path = self.index_path(shard)
            try:
                with np.load(path) as index:
                    loaded = {name: index[name] for name in ("offsets", "rows", "keys")}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                report_damaged_shard(self._reported, path, f"cannot be read ({error_text(e)})")
                raise InputError(f"{path}: cannot be read") from None
            if len(loaded["rows"]) != self.groups[shard]:
                what = f"its index now holds {len(loaded['rows'])} samples, not {self.groups[shard]} (the tar changed)"
                report_damaged_shard(self._reported, self.tars[shard], what)
                raise InputError(f"{self.tars[shard]}: {what}")
            if len(self._indexes) >= MAX_LOADED_INDEXES:
                self._indexes.pop(next(iter(self._indexes)))
            self._indexes[shard] = loaded
        return self._indexes[shard]

    def _file(self, shard: int):
        return self._files.get(shard, self.tars[shard], self.tars[shard], self._reported)

    def where(self, i: int) -> str:
        """``<folder>/<tar>#<key>`` of sample ``i`` (``#sample <position>`` when its index is unreadable)."""
        shard, pos = self.locate(i)
        try:
            key = int(self._index(shard)["keys"][pos])
        except InputError:
            key = -1
        return f"{self.tars[shard]}#" + (f"{key:0{self.key_widths[shard]}d}" if key >= 0 else f"sample {pos}")

    def read(self, i: int) -> Tuple[bytes, Targets]:
        """Sample ``i``'s image bytes, with one seek and one read, and its targets; :class:`InputError`
        naming ``<tar>#<key>`` when the tar is cut short before its end (the tar is logged once)."""
        shard, pos = self.locate(i)
        index = self._index(shard)
        offset, size = (int(v) for v in index["offsets"][pos])
        f = self._file(shard)
        f.seek(offset)
        data = f.read(size)
        if len(data) < size:
            report_damaged_shard(
                self._reported,
                self.tars[shard],
                f"truncated shard (sample {self.where(i)} needs bytes up to {offset + size})",
            )
            raise InputError(f"{self.where(i)}: truncated shard")
        return data, self.labels.targets_at(int(index["rows"][pos]))

    def store_row(self, i: int) -> int:
        """The label store row of sample ``i``."""
        shard, pos = self.locate(i)
        return int(self._index(shard)["rows"][pos])

    def targets_at(self, i: int) -> Targets:
        return self.labels.targets_at(self.store_row(i))

    def path(self, i: int) -> str:
        """The store's image path of sample ``i``'s post (what other sources add their targets by)."""
        return self.labels.path(self.store_row(i))

    def row_of(self, path: str) -> Optional[int]:
        """The sample of image ``path`` (a store image path, see :func:`relative_image_path`), None when
        no tar holds its post (the first sample of a post that several hold)."""
        row = self.labels.row_of(path)
        if row is None:
            return None
        if self._samples is None:  # only when another source lists the images: every tar's rows, once
            self._samples = np.full(len(self.labels.store), -1, dtype=np.int64)
            for shard in range(len(self.tars)):
                rows, first = np.unique(self._index(shard)["rows"], return_index=True)
                free = self._samples[rows] < 0
                self._samples[rows[free]] = self.starts[shard] + first[free]
        sample = int(self._samples[row])
        return sample if sample >= 0 else None

    def lists(self, path: str) -> bool:
        return self.row_of(path) is not None

    def targets_for(self, path: str) -> Targets:
        sample = self.row_of(path)
        return self.unlisted(path) if sample is None else self.targets_at(sample)

    def empty(self) -> Targets:
        return self.labels.empty()

    def specs(self) -> Dict[str, Dict[str, Any]]:
        return self.labels.specs()

    def describe(self) -> str:
        return f"img2dataset shards {self.folder} ({len(self.tars)} tars)"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_indexes"] = {}
        return state


def list_tars(folder: str, key: str) -> List[str]:
    """The sorted ``*.tar`` of local ``folder``; a one-line :class:`ConfigError` naming ``key`` when
    there are none."""
    if "://" in folder:
        raise ConfigError(f"{key}={folder}: local folders only; copy img2dataset's output to local disk")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".tar"))
    except OSError as e:
        raise ConfigError(f"{key}={folder}: cannot be listed ({error_text(e)})") from None
    if not names:
        raise ConfigError(
            f"{key}={folder}: no *.tar in it; point it at img2dataset's --output_folder (--output_format webdataset)"
        )
    return [os.path.join(folder, n) for n in names]
