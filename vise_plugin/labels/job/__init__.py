"""The label job: engagement files cut into shards, select -> fit -> assign -> merge, resumable, locally or on SLURM."""

from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.pipeline import LabelPipeline, run_label_job
from vise_plugin.labels.job.selection import fit_score
from vise_plugin.labels.job.shards import Shard, expand_inputs, iter_records, plan_shards, read_shard
from vise_plugin.labels.job.stages import LabelSettings

__all__ = [
    "BadRecordReport",
    "LabelPipeline",
    "run_label_job",
    "fit_score",
    "Shard",
    "expand_inputs",
    "iter_records",
    "plan_shards",
    "read_shard",
    "LabelSettings",
]
