"""Writing the training set as tar shards (see :mod:`vise_plugin.data.tar_shards` for the format).

The label store's rows are cut into shards of ``samples_per_shard`` consecutive rows, sized from the
mean file size of a sample of the images so that a shard is about ``shard_bytes``. Each shard is one
job (local processes or a submitit array, like the label job): it writes ``shard-NNNNNN.tar`` and its
index under temporary names, then its summary; a rerun skips the shards complete on disk (summary,
index, and a tar file of the summary's size), so a killed job loses only the shards it was writing.
``manifest.json`` is written last.
"""

import io
import json
import logging
import os
import tarfile
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np
from iopath.common.file_io import g_pathmgr

from vise_plugin.data.tar_shards import FORMAT, MANIFEST, sample_json, sample_key, shard_name
from vise_plugin.errors import ConfigError
from vise_plugin.io_utils import file_sha256
from vise_plugin.labels.store import LabelStore
from vise_plugin.launch import JobRunner
from vise_plugin.process_state import keeps_process_state

logger = logging.getLogger(__name__)

MTIME = 946684800  # a fixed time in every member header: a shard written twice is the same bytes


@dataclass
class ShardPlan:
    """What every shard job needs: the store, its images, the output folder and the cut."""

    label_store: str
    image_root: str
    output: str
    samples_per_shard: int
    num_samples: int

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.samples_per_shard)

    def rows(self, shard: int) -> range:
        return range(shard * self.samples_per_shard, min((shard + 1) * self.samples_per_shard, self.num_samples))


def plan_shards(label_store: str, image_root: str, output: str, shard_bytes: int, probe: int = 1000) -> ShardPlan:
    """Samples per shard from the mean size of up to ``probe`` evenly spaced images of the store."""
    store = LabelStore(label_store)
    if len(store) == 0:
        raise ConfigError(f"{label_store}: the label store has no posts to write")
    rows = np.unique(np.linspace(0, len(store) - 1, min(probe, len(store))).astype(np.int64))
    sizes = [
        os.path.getsize(p) for p in (os.path.join(image_root, store.images[int(r)]) for r in rows) if os.path.exists(p)
    ]
    if not sizes:
        raise ConfigError(
            f"none of {len(rows)} probed images of {label_store} exists under {image_root}; set config.data.image_root"
        )
    per_shard = max(1, int(shard_bytes // (np.mean(sizes) + 1024)))  # + the members' headers and the json
    return ShardPlan(label_store, image_root, output, per_shard, len(store))


def _summary_path(plan: ShardPlan, shard: int) -> str:
    return os.path.join(plan.output, f"{shard_name(shard)}.json")


def _written(plan: ShardPlan, shard: int) -> Optional[Dict[str, Any]]:
    """Shard ``shard``'s summary when the shard is complete on disk (its summary, its index, and its
    tar file of the summary's size), else None."""
    base = os.path.join(plan.output, shard_name(shard))
    try:
        with open(_summary_path(plan, shard)) as f:
            summary = json.load(f)
        complete = os.path.getsize(base + ".tar") == summary["bytes"] and os.path.exists(base + ".idx.npy")
    except (OSError, ValueError, KeyError, TypeError):
        complete = False
    if not complete and os.path.exists(_summary_path(plan, shard)):
        logger.warning("%s: incomplete (its tar file, index or summary is missing or differs); written again", base)
    return summary if complete else None


def write_shard(plan: ShardPlan, shard: int) -> Dict[str, Any]:
    """Writes shard ``shard`` (skipped when it is complete on disk); returns its summary."""
    summary = _written(plan, shard)
    if summary is not None:
        return summary
    summary_path = _summary_path(plan, shard)
    store = LabelStore(plan.label_store)
    base = os.path.join(plan.output, shard_name(shard))
    rows, images, skipped = [], [], []
    with tarfile.open(base + ".tar.tmp", "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in plan.rows(shard):
            path = os.path.join(plan.image_root, store.images[row])
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                logger.warning("%s: left out of %s (%s)", path, shard_name(shard), e.strerror or e)
                skipped.append(int(row))
                continue
            key = sample_key(row)
            for name, blob in ((f"{key}.jpg", data), (f"{key}.json", sample_json(store, row))):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(blob), MTIME, 0o444
                info.uname = info.gname = "vise"
                tar.addfile(info, io.BytesIO(blob))
            rows.append(int(row))
            images.append(store.images[row])
    index = _index(base + ".tar.tmp", len(rows))
    np.save(base + ".idx.tmp.npy", index)
    summary = {
        "name": shard_name(shard),
        "samples": len(rows),
        "rows": [rows[0], rows[-1]] if rows else [],
        "bytes": os.path.getsize(base + ".tar.tmp"),
        "sha256": file_sha256(base + ".tar.tmp"),
        "skipped": skipped,
        "images": images,
    }
    os.replace(base + ".tar.tmp", base + ".tar")
    os.replace(base + ".idx.tmp.npy", base + ".idx.npy")
    with open(summary_path + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(summary_path + ".tmp", summary_path)
    return summary


def _index(tar_path: str, num_samples: int) -> np.ndarray:
    """``(n, 5)`` int64: row, jpg offset, jpg size, json offset, json size of each sample, from the
    members' headers."""
    index = np.zeros((num_samples, 5), dtype=np.int64)
    with tarfile.open(tar_path, "r") as tar:
        members = tar.getmembers()
    for i in range(num_samples):
        jpg, meta = members[2 * i], members[2 * i + 1]
        index[i] = (int(jpg.name.split(".")[0]), jpg.offset_data, jpg.size, meta.offset_data, meta.size)
    return index


def write_manifest(plan: ShardPlan, summaries: List[Dict[str, Any]]) -> Dict[str, Any]:
    store = LabelStore(plan.label_store)
    manifest = {
        "format": FORMAT,
        "label_store": plan.label_store,
        "image_root": plan.image_root,
        "tasks": {t: {"k": store.num_classes(t)} for t in ("comments", "reactions")},
        "plan": asdict(plan),
        "num_samples": sum(s["samples"] for s in summaries),
        "skipped": sum(len(s["skipped"]) for s in summaries),
        "shards": [{k: s[k] for k in ("name", "samples", "rows", "bytes", "sha256")} for s in summaries],
    }
    path = os.path.join(plan.output, MANIFEST)
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(path + ".tmp", path)
    return manifest


@keeps_process_state
def run_shard_job(cfg: Any) -> Dict[str, Any]:
    """The shard job of a composed ``config`` node: ``config.data.labels`` (+ ``image_root``) into
    ``config.shards.output``, ``config.shards.num_workers`` processes or a submitit array."""
    from omegaconf import OmegaConf

    from vise_plugin.data.target_sources import EngagementLabels

    s = cfg.shards
    if not s.output:
        raise ConfigError("no output folder: set config.shards.output=<folder>")
    EngagementLabels.check_inputs({}, {"labels": cfg.data.labels})
    image_root = cfg.data.image_root or LabelStore(cfg.data.labels).meta.get("image_root", "")
    g_pathmgr.mkdirs(s.output)
    plan_path = os.path.join(s.output, "plan.json")
    if os.path.exists(plan_path):  # a rerun continues with the same cut (the folder may have moved)
        try:
            with open(plan_path) as f:
                plan = ShardPlan(**{**json.load(f), "output": s.output})
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{plan_path}: unreadable ({e}); delete it to plan the shards again") from None
        if os.path.abspath(plan.label_store) != os.path.abspath(cfg.data.labels):
            raise ConfigError(
                f"{s.output} holds shards of {plan.label_store}, not of {cfg.data.labels}; "
                "write into another config.shards.output"
            )
    else:
        plan = plan_shards(cfg.data.labels, image_root, s.output, int(s.shard_bytes))
        with open(plan_path + ".tmp", "w") as f:
            json.dump(asdict(plan), f)
        os.replace(plan_path + ".tmp", plan_path)
    logger.info(
        "writing %d posts of %s as %d shard(s) of %d into %s",
        plan.num_samples,
        plan.label_store,
        plan.num_shards,
        plan.samples_per_shard,
        plan.output,
    )
    slurm = OmegaConf.to_container(cfg.slurm, resolve=True)
    with JobRunner(s.num_workers, slurm, os.path.join(s.output, "logs"), list(cfg.imports)) as runner:
        summaries = runner.map(write_shard, [(plan, j) for j in range(plan.num_shards)], "writing shards")
    manifest = write_manifest(plan, summaries)
    logger.info(
        "wrote %d samples in %d shards to %s (%d images missing, left out)",
        manifest["num_samples"],
        len(summaries),
        plan.output,
        manifest["skipped"],
    )
    return manifest
