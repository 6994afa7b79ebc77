"""The steps of a label job. Each reads and writes only the work folder, so any machine can run it.

``select_shard`` (per shard) lists the fitting candidates; ``fit_model`` fits the labeler on the
held-out posts (Step 1); ``assign_shard`` (per shard) labels every other post (Step 2). The merge
into the final store is in :mod:`.merge`.
"""

import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from vise_plugin.errors import InputError
from vise_plugin.labels.clustering import TooFewToCluster
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.selection import fit_score, fit_threshold
from vise_plugin.labels.job.shards import Shard, read_shard
from vise_plugin.labels.job.work_dir import WorkDir, read_json, write_json_atomic
from vise_plugin.labels.labeler import EngagementLabeler
from vise_plugin.labels.records import BAD_RECORD_KINDS, REACTION_TYPES, EngagementRecord, parse_record
from vise_plugin.labels.sizes import size_hint, suggested_sizes
from vise_plugin.labels.store import LabelStoreWriter
from vise_plugin.process_state import keeps_process_state

logger = logging.getLogger(__name__)


@dataclass
class LabelSettings:
    """What every step needs to know; see ``config.labels`` in configs/defaults.yaml."""

    work_dir: str
    comments: Dict[str, Any]
    reactions: Dict[str, Any]
    fit_fraction: float = 0.074
    fit_max_posts: Optional[int] = None
    label_fit_subset: bool = False
    max_comments_per_post: int = 100
    seed: int = 0
    chunk_size: int = 10_000
    skip_bad_records: bool = False
    skip_empty_posts: bool = True
    threads_per_worker: int = 1
    shards: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def reaction_types(self) -> Tuple[str, ...]:
        """The reaction names of the posts (``reactions.types``; None: the paper's five)."""
        return tuple(self.reactions.get("types") or REACTION_TYPES)

    @property
    def work(self) -> WorkDir:
        return WorkDir(self.work_dir)


def _read(settings: LabelSettings, shard: Shard, bad: BadRecordReport) -> Iterator[EngagementRecord]:
    skip = set(BAD_RECORD_KINDS) if settings.skip_bad_records else set()
    if settings.skip_empty_posts:
        skip.add("empty_post")
    return read_shard(shard, bad, skip, settings.reaction_types)


def select_shard(settings: LabelSettings, shard: Shard) -> Dict[str, Any]:
    """Writes the shard's fitting candidates (score below ``fit_fraction``) and their scores."""
    summary_path = settings.work.select_summary(shard.name)
    done = read_json(summary_path)
    if done is not None:
        return done
    base = settings.work.path("select", shard.name)
    bad = BadRecordReport()
    scores: List[float] = []
    num_read = 0
    with open(base + ".jsonl.tmp", "w", encoding="utf-8") as out:
        for record in _read(settings, shard, bad):
            num_read += 1
            score = fit_score(record.id, settings.seed)
            if score < settings.fit_fraction:
                out.write(record.to_json() + "\n")
                scores.append(score)
    np.save(base + ".scores.tmp.npy", np.array(scores, dtype=np.float64))
    os.replace(base + ".jsonl.tmp", base + ".jsonl")
    os.replace(base + ".scores.tmp.npy", base + ".scores.npy")
    summary = {"shard": shard.to_dict(), "num_read": num_read, "num_candidates": len(scores), "num_bad": bad.total}
    write_json_atomic(summary_path, summary)
    return summary


def fit_model(settings: LabelSettings, shards: List[Shard]) -> Dict[str, Any]:
    """Step 1: fits the labeler on the held-out posts; writes ``model/`` with ``selection.json``."""
    work = settings.work
    done = read_json(work.selection)
    if done is not None:
        return done
    base = [work.path("select", s.name) for s in shards]
    scores = [np.load(b + ".scores.npy") for b in base]
    threshold = fit_threshold(np.concatenate(scores), settings.fit_fraction, settings.fit_max_posts)
    records: List[EngagementRecord] = []
    for b, shard_scores in zip(base, scores):
        with open(b + ".jsonl", encoding="utf-8") as f:
            records += [
                parse_record(line, reaction_types=settings.reaction_types)
                for line, s in zip(f, shard_scores)
                if s < threshold
            ]
    num_posts = sum(read_json(work.select_summary(s.name))["num_read"] for s in shards)
    if not records:
        advice = _size_advice(settings, num_posts)
        raise InputError(f"no post fell in the fitting subset; raise config.labels.fit_fraction; {advice}")
    logger.info("fitting clusters on %d held-out posts of %d", len(records), num_posts)
    try:
        labeler = EngagementLabeler.fit(
            records, settings.comments, settings.reactions, settings.max_comments_per_post, settings.seed
        )
    except TooFewToCluster as e:
        held = f"{len(records):,} held out of {num_posts:,} posts"
        raise TooFewToCluster(f"{e} ({held}); {_size_advice(settings, num_posts)}") from None
    tmp = work.model + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    info = labeler.save(tmp)
    with open(os.path.join(tmp, "fit_subset_ids.txt"), "w", encoding="utf-8") as f:
        f.writelines(r.id + "\n" for r in records)
    selection = {
        "seed": settings.seed,
        "fraction": settings.fit_fraction,
        "max_posts": settings.fit_max_posts,
        "threshold": threshold,
        "num_posts": len(records),
        "ids_file": "model/fit_subset_ids.txt",
        "labeler": info,
    }
    write_json_atomic(os.path.join(tmp, "selection.json"), selection)
    shutil.rmtree(work.model, ignore_errors=True)
    os.replace(tmp, work.model)
    return selection


def _size_advice(settings: LabelSettings, num_posts: int) -> str:
    """The settings for ``num_posts`` posts, and the work folder to delete first when they choose another
    fitting subset than the one already chosen there."""
    advice = size_hint(num_posts)
    if suggested_sizes(num_posts).fit_fraction != settings.fit_fraction:
        advice += (
            f"; delete {settings.work_dir} first (its fitting subset was chosen with "
            f"fit_fraction={settings.fit_fraction})"
        )
    return advice


_LABELERS: Dict[Tuple[str, str], EngagementLabeler] = {}


def _labeler(folder: str) -> EngagementLabeler:
    """The fitted labeler in ``folder``, loaded once per worker process however many shards it runs.

    The cache is keyed by ``labeler.json``, which holds the checksums of the model files, so a refit
    into the same folder within one process (one worker, a notebook, the demo run twice) is loaded anew.
    """
    with open(os.path.join(folder, "labeler.json"), encoding="utf-8") as f:
        key = (folder, f.read())
    if key not in _LABELERS:
        _LABELERS.clear()
        _LABELERS[key] = EngagementLabeler.load(folder)
    return _LABELERS[key]


@keeps_process_state
def assign_shard(settings: LabelSettings, shard: Shard) -> Dict[str, Any]:
    """Step 2 for one shard: labels its posts outside the fitting subset (all of them with
    ``label_fit_subset``) into ``assign/<shard>/``.

    Posts are read, encoded and assigned ``chunk_size`` at a time and streamed to disk, so memory
    does not grow with the shard.
    """
    work = settings.work
    done = read_json(work.assign_summary(shard.name))
    if done is not None:
        return done["shard_summary"]
    torch.set_num_threads(settings.threads_per_worker)
    threshold = read_json(work.selection)["threshold"]
    labeler = _labeler(work.model)
    bad = BadRecordReport()
    writer = LabelStoreWriter(work.assign_store(shard.name))
    chunk: List[EngagementRecord] = []
    num_read = num_held_out = 0

    def flush():
        pairs, reactions = labeler.label(chunk)
        writer.append([r.id for r in chunk], [r.image for r in chunk], pairs, reactions)
        chunk.clear()

    for record in _read(settings, shard, bad):
        num_read += 1
        if not settings.label_fit_subset and fit_score(record.id, settings.seed) < threshold:
            num_held_out += 1
            continue
        chunk.append(record)
        if len(chunk) >= settings.chunk_size:
            flush()
    if chunk:
        flush()
    summary = {
        "shard": shard.to_dict(),
        "num_read": num_read,
        "num_held_out": num_held_out,
        "num_labelled": writer.num_posts,
        "bad_records": bad.to_dict(),
    }
    writer.close({"shard_summary": summary, "tasks": {}})
    return summary
