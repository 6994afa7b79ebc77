"""A label job (Sec. 3.1) at any scale: select -> fit -> assign -> merge, resumable at every step."""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from vise_plugin.errors import ConfigError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.merge import merge_store
from vise_plugin.labels.job.reddit_step import join_reddit, joined_files, split_reddit
from vise_plugin.labels.job.shards import Shard, expand_inputs, file_size, plan_shards
from vise_plugin.labels.job.stages import (
    LabelSettings,
    assign_shard,
    fit_model,
    select_shard,
)
from vise_plugin.labels.job.work_dir import read_json, said_change
from vise_plugin.launch import JobRunner
from vise_plugin.process_state import keeps_process_state

logger = logging.getLogger(__name__)

#: settings the fit step reads and the select step does not: a rerun may change them until a model is fitted
FIT_SETTINGS = ("comments", "reactions", "max_comments_per_post", "fit_max_posts", "label_fit_subset")
#: settings named otherwise in config.labels, with their values there
_CONFIG_KEYS = {
    "reaction_types": ("reactions.types", {}),
    "skip_bad_records": ("on_bad_record", {True: "skip", False: "fail"}),
    "skip_empty_posts": ("on_empty_post", {True: "skip", False: "fail"}),
}


def describe_plan_change(key: Tuple[str, ...], old: Any, new: Any) -> str:
    """A difference between two label job plans (:meth:`LabelPipeline.plan`) in config terms:
    ``config.labels.comments.k: 5000 here, 8 now``."""
    if key[0] == "settings" and len(key) > 1:
        field, values = _CONFIG_KEYS.get(key[1], (key[1], {}))
        name = ".".join(("config.labels", field) + key[2:])
        old, new = (values.get(v, v) if isinstance(v, bool) else v for v in (old, new))
    elif key[0] == "sizes" and len(key) > 1:
        name = f"the size of {key[1]}"
    else:
        name = "the input shards (config.labels.posts, config.labels.shard_bytes)"
        old, new = (f"{len(v)} shards" if isinstance(v, list) else v for v in (old, new))
    return said_change(name, old, new)


class LabelPipeline:
    """Generates a label store from engagement files.

    Steps, each skipped on a rerun when its output is already in the work folder:

    1. select (per shard): lists the posts whose id-hash puts them in the fitting subset;
    2. fit: fits the comment encoder and both K-means on the held-out posts (Step 1 of the paper);
    3. assign (per shard): labels every other post, streaming ``chunk_size`` posts at a time (Step 2);
    4. merge: checks post counts per shard and writes the store, its cluster report and (optionally)
       the VISSL/ClusterFit export.

    Args:
        settings: :class:`LabelSettings` (clustering and selection settings, work folder).
        runner: where the per-shard steps run (:class:`JobRunner`).
        shard_bytes: target size of a shard of an uncompressed input file.
        report: write ``report/`` (cluster size PNGs, clusters.md).
        export_interop: write ``interop/`` (train_images.npy, train_<task>_labels.npy).
        keep_work_dir: keep the work folder after the store is written.
        columns: the column mapping of parquet posts (``config.labels.columns``; None: the defaults).
        reddit: :class:`vise_plugin.reddit.RedditSettings` for Reddit dumps among the posts (None: the defaults).

    Reddit dumps (``RS_*.zst`` with ``RC_*.zst``) are first joined into parquet posts (step 0, once).
    """

    def __init__(
        self,
        settings: LabelSettings,
        runner: JobRunner,
        shard_bytes: int = 256 << 20,
        report: bool = True,
        export_interop: bool = False,
        keep_work_dir: bool = False,
        columns: Optional[Dict[str, Any]] = None,
        reddit: Any = None,
    ):
        self.settings, self.runner = settings, runner
        self.shard_bytes, self.report, self.export_interop = shard_bytes, report, export_interop
        self.keep_work_dir = keep_work_dir
        self.columns, self.reddit = columns, reddit

    @classmethod
    def from_config(
        cls, labels_cfg: Dict[str, Any], slurm_cfg: Optional[Dict[str, Any]], output: str, imports: Sequence[str] = ()
    ) -> "LabelPipeline":
        for key in ("on_bad_record", "on_empty_post"):
            if labels_cfg.get(key, "skip") not in ("fail", "skip"):
                raise ConfigError(f"config.labels.{key}={labels_cfg[key]!r}: use fail or skip")
        work_dir = labels_cfg.get("work_dir") or output.rstrip("/") + ".work"
        settings = LabelSettings(
            work_dir=work_dir,
            comments=dict(labels_cfg["comments"]),
            reactions=dict(labels_cfg["reactions"]),
            fit_fraction=labels_cfg["fit_fraction"],
            fit_max_posts=labels_cfg.get("fit_max_posts"),
            label_fit_subset=bool(labels_cfg.get("label_fit_subset", False)),
            max_comments_per_post=labels_cfg["max_comments_per_post"],
            seed=labels_cfg["seed"],
            chunk_size=labels_cfg["chunk_size"],
            skip_bad_records=labels_cfg["on_bad_record"] == "skip",
            skip_empty_posts=labels_cfg.get("on_empty_post", "skip") == "skip",
            threads_per_worker=labels_cfg.get("threads_per_worker", 1),
        )
        runner = JobRunner(labels_cfg.get("num_workers", 1), slurm_cfg, os.path.join(work_dir, "logs"), imports)
        from vise_plugin.reddit.settings import RedditSettings

        return cls(
            settings,
            runner,
            int(labels_cfg.get("shard_bytes", 256 << 20)),
            labels_cfg.get("report", True),
            labels_cfg.get("export_interop", False),
            labels_cfg.get("keep_work_dir", False),
            labels_cfg.get("columns"),
            RedditSettings.from_config(labels_cfg.get("reddit") or {}),
        )

    def _inputs_id(self, files: List[str]) -> str:
        """A digest of the input files (names, sizes) and every setting: what a finished store was made from."""
        described = {
            "settings": self._settings(),
            "files": {path: file_size(path) for path in files},
            "shard_bytes": self.shard_bytes,
            "columns": self.columns,
            "reddit": None if self.reddit is None else self.reddit.output_settings(),
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()

    def _join_reddit(self, submissions: List[str], comments: List[str]) -> Dict[str, Any]:
        """Step 0: the Reddit dumps joined into parquet posts; their reaction types are the label job's."""
        from vise_plugin.reddit.settings import RedditSettings

        reddit = self.reddit or RedditSettings()
        types = list(reddit.reactions)
        if self.settings.reactions.get("types") not in (None, types):
            raise ConfigError(
                f"config.labels.reactions.types={self.settings.reactions['types']}: Reddit dumps give the "
                f"reaction types of config.labels.reddit.reactions ({types}); set that instead"
            )
        self.settings.reactions["types"] = types
        logger.info("joining %d Reddit comment dump(s) to %d submission dump(s)", len(comments), len(submissions))
        with self.runner:
            result = self.runner.map(
                join_reddit, [(self.settings, reddit, submissions, comments)], "0/3 joining Reddit comments", unit="job"
            )[0]
        summary = result["summary"]
        logger.info(
            "Reddit: %d image posts, %d of %d comments joined",
            summary["posts"],
            summary["comments_joined"],
            summary["comments_read"],
        )
        return result

    def _settings(self) -> Dict[str, Any]:
        """The settings that decide the labels (not where or how fast they are made). The reaction types
        stand apart from the other reaction settings: the select step reads them too."""
        settings = dataclasses.asdict(self.settings)
        for key in ("work_dir", "shards", "threads_per_worker"):
            settings.pop(key)
        if not settings["label_fit_subset"]:  # as stores written before the setting existed were
            settings.pop("label_fit_subset")
        settings["reaction_types"] = list(self.settings.reaction_types)
        settings["reactions"].pop("types", None)
        return settings

    def plan(self, shards: List[Shard]) -> Dict[str, Any]:
        return {
            "settings": self._settings(),
            "shards": [s.to_dict() for s in shards],
            "sizes": {path: file_size(path) for path in sorted({s.path for s in shards})},
        }

    def run(self, posts: Union[str, Sequence[str]], output: str, image_root: Optional[str] = None) -> Dict[str, Any]:
        """Labels ``posts`` (a file, glob or list) into the store folder ``output``; returns its meta.json."""
        files = expand_inputs(posts)
        submissions, comments, others = split_reddit(files)
        inputs_id = self._inputs_id(files)
        existing = read_json(os.path.join(output, "meta.json"))
        if existing is not None and existing.get("inputs_sha256") == inputs_id:
            logger.info("%s is complete for these inputs and settings; nothing to do", output)
            return existing
        reddit = self._join_reddit(submissions, comments) if submissions else None
        joined = joined_files(reddit, self.settings) if reddit else []
        before = BadRecordReport.from_dict(reddit["bad_records"]) if reddit else None
        shards = plan_shards(others, self.shard_bytes, self.columns)
        shards += [dataclasses.replace(s, index=len(shards) + s.index) for s in plan_shards(joined, self.shard_bytes)]
        plan = self.plan(shards)
        plan_id = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
        existing = read_json(os.path.join(output, "meta.json"))
        if existing is not None and existing.get("plan_sha256") == plan_id:
            logger.info("%s is complete for these inputs and settings; nothing to do", output)
            if not self.keep_work_dir:
                shutil.rmtree(self.settings.work.root, ignore_errors=True)  # what a Reddit join just wrote
            return existing
        work = self.settings.work
        work.check_plan(plan, describe_plan_change, FIT_SETTINGS)
        logger.info("labelling %d file(s) in %d shard(s); work folder %s", len(files), len(shards), work.root)
        with self.runner:
            pending = [s for s in shards if not os.path.exists(work.select_summary(s.name))]
            self.runner.map(select_shard, [(self.settings, s) for s in pending], "1/3 selecting the fitting subset")
            if not os.path.exists(work.selection):
                self.runner.map(fit_model, [(self.settings, shards)], "2/3 fitting clusters", unit="job")
            pending = [s for s in shards if not os.path.exists(work.assign_summary(s.name))]
            self.runner.map(assign_shard, [(self.settings, s) for s in pending], "3/3 assigning labels")
        meta = {
            "source": files,
            "image_root": image_root or os.path.dirname(os.path.abspath(files[0])),
            "num_shards": len(shards),
            "plan_sha256": plan_id,
            "inputs_sha256": inputs_id,
        }
        if reddit:
            meta["reddit"] = {k: reddit[k] for k in ("settings", "summary")}
        meta = merge_store(self.settings, shards, output, meta, self.report, self.export_interop, bad=before)
        counts = meta["counts"]
        held_out = (
            f"the {meta['fit_subset']['num_posts']} held out to fit labelled too"
            if self.settings.label_fit_subset
            else f"{counts['held_out']} held out to fit"
        )
        skipped = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in meta["bad_records"]["counts"].items())
        logger.info(
            "wrote %d labelled posts to %s (%s; %d lines skipped%s)",
            counts["labelled"],
            output,
            held_out,
            meta["bad_records"]["total"],
            f": {skipped}" if skipped else "",
        )
        if not self.keep_work_dir:
            shutil.rmtree(work.root, ignore_errors=True)
        return meta


@keeps_process_state
def run_label_job(cfg) -> Dict[str, Any]:
    """Runs the label job of a composed ``config`` node (its ``labels`` and ``slurm`` sections)."""
    from omegaconf import OmegaConf

    labels_cfg = OmegaConf.to_container(cfg.labels, resolve=True)
    slurm_cfg = OmegaConf.to_container(cfg.slurm, resolve=True)
    output = labels_cfg["output"]
    return LabelPipeline.from_config(labels_cfg, slurm_cfg, output, list(cfg.imports)).run(
        labels_cfg["posts"], output, labels_cfg["image_root"]
    )
