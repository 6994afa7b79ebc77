"""The last step of a label job: checks the shards' post counts and writes the final label store."""

import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np

from vise_plugin.errors import InputError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.interop import export_clusterfit
from vise_plugin.labels.job.report import write_cluster_report
from vise_plugin.labels.job.shards import Shard
from vise_plugin.labels.job.stages import LabelSettings
from vise_plugin.labels.job.work_dir import read_json
from vise_plugin.labels.labeler import EngagementLabeler
from vise_plugin.labels.store import LabelStore, LabelStoreWriter

logger = logging.getLogger(__name__)


def check_counts(settings: LabelSettings, shards: List[Shard], stores: List[LabelStore]) -> List[Dict[str, Any]]:
    """Per shard: the posts read when selecting equal those read when labelling; returns the summaries."""
    summaries = []
    for shard, store in zip(shards, stores):
        selected = read_json(settings.work.select_summary(shard.name))
        labelled = store.meta["shard_summary"]
        if selected["num_read"] != labelled["num_read"]:
            raise InputError(
                f"{shard.path} ({shard.name}): {selected['num_read']} posts when selecting the fitting "
                f"subset but {labelled['num_read']} when labelling; the file changed during the job"
            )
        if len(store) != labelled["num_read"] - labelled["num_held_out"]:
            raise InputError(
                f"{store.folder}: {len(store)} labelled posts, expected "
                f"{labelled['num_read'] - labelled['num_held_out']}; delete it and rerun"
            )
        summaries.append(labelled)
    return summaries


def merge_store(
    settings: LabelSettings,
    shards: List[Shard],
    output: str,
    meta: Dict[str, Any],
    report: bool = True,
    export_interop: bool = False,
    block: int = 1_000_000,
    bad: Optional[BadRecordReport] = None,
) -> Dict[str, Any]:
    """Concatenates the shards' stores, in shard order, into the store ``output``; returns its meta.
    ``bad``: the bad lines skipped before the shards were read (e.g. when joining Reddit dumps)."""
    stores = [LabelStore(settings.work.assign_store(s.name)) for s in shards]
    summaries = check_counts(settings, shards, stores)
    labeler = EngagementLabeler.load(settings.work.model)
    selection = read_json(settings.work.selection)
    kc, kr = labeler.comment_centroids.k, labeler.reaction_centroids.k
    comment_sizes, reaction_sizes = np.zeros(kc, np.int64), np.zeros(kr, np.int64)
    without = {"comments": 0, "reactions": 0}
    bad = BadRecordReport().merge(bad or BadRecordReport())
    writer = LabelStoreWriter(output)
    for store, summary in zip(stores, summaries):
        bad.merge(BadRecordReport.from_dict(summary["bad_records"]))
        for start in range(0, len(store), block):
            end = min(start + block, len(store))
            writer.append_from(store, start, end)
            offsets, pairs = store.comment_block(start, end)
            without["comments"] += int((np.diff(offsets) == 0).sum())
            comment_sizes += np.bincount(pairs[:, 0], weights=pairs[:, 1], minlength=kc).astype(np.int64)
            reactions = np.asarray(store.reactions[start:end])
            reaction_sizes += np.bincount(reactions[reactions >= 0], minlength=kr)
            without["reactions"] += int((reactions < 0).sum())
    if report:
        write_cluster_report(os.path.join(writer.tmp, "report"), labeler, comment_sizes, reaction_sizes)
    if export_interop:
        export_clusterfit(stores, meta["image_root"], os.path.join(writer.tmp, "interop"))
    full_meta = {
        **meta,
        "tasks": {"comments": {"k": kc}, "reactions": {"k": kr, "types": list(labeler.reaction_types)}},
        "fit_subset": {
            **{k: selection[k] for k in ("seed", "fraction", "max_posts", "threshold", "num_posts", "ids_file")},
            "labelled": settings.label_fit_subset,
        },
        "labeler": selection["labeler"],
        "counts": {
            "posts_read": sum(s["num_read"] for s in summaries),
            "held_out": sum(s["num_held_out"] for s in summaries),
            "labelled": int(writer.num_posts),
            "without_comment_label": without["comments"],
            "without_reaction_label": without["reactions"],
        },
        "bad_records": bad.to_dict(),
    }
    writer.close(full_meta, model_dir=settings.work.model)
    for line in bad.lines():
        logger.warning("%s", line)
    return full_meta
