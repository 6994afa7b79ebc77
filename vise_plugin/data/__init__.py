"""Training data: target sources, the pretraining datasets (image files or tar shards, indexed or streamed),
image loading and decoding, transforms and the resumable sampler."""

from vise_plugin.data.engagement_dataset import EngagementImages, VisEEngagementDataset
from vise_plugin.data.pretraining_images import PretrainingDataset, PretrainingImages, subset_indices
from vise_plugin.data.streaming import StreamingShards, StreamingShardsDataset
from vise_plugin.data.tag_table import TagTable
from vise_plugin.data.tagged_images import TaggedImages, WebTagImagesDataset
from vise_plugin.data.tar_shards import TarShards
from vise_plugin.data.target_sources import EngagementLabels, TargetSource, WebTags

__all__ = [
    "EngagementImages",
    "VisEEngagementDataset",
    "PretrainingDataset",
    "PretrainingImages",
    "subset_indices",
    "TagTable",
    "TaggedImages",
    "WebTagImagesDataset",
    "EngagementLabels",
    "TargetSource",
    "WebTags",
    "StreamingShards",
    "StreamingShardsDataset",
    "TarShards",
]
