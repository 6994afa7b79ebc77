from .bad_records import BadRecordReport
from .engagement_dataset import EngagementImages, VisEEngagementDataset, subset_indices
from .label_store import LabelStore, LabelStoreWriter, write_label_store
from .records import BAD_RECORD_KINDS, REACTION_TYPES, BadRecord, EngagementRecord, parse_record, write_records
from .shards import Shard, expand_inputs, iter_records, plan_shards, read_shard
from .tag_table import TagTable
from .tagged_images import TaggedImages, WebTagImagesDataset

__all__ = [
    "BadRecordReport",
    "EngagementImages",
    "VisEEngagementDataset",
    "subset_indices",
    "LabelStore",
    "LabelStoreWriter",
    "write_label_store",
    "BAD_RECORD_KINDS",
    "REACTION_TYPES",
    "BadRecord",
    "EngagementRecord",
    "parse_record",
    "write_records",
    "Shard",
    "expand_inputs",
    "iter_records",
    "plan_shards",
    "read_shard",
    "TagTable",
    "TaggedImages",
    "WebTagImagesDataset",
]
