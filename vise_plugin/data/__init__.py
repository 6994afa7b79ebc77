from .engagement_dataset import EngagementImages, VisEEngagementDataset, subset_indices
from .label_store import LabelStore, write_label_store
from .records import REACTION_TYPES, EngagementRecord, iter_records, parse_record, write_records

__all__ = [
    "EngagementImages",
    "VisEEngagementDataset",
    "subset_indices",
    "LabelStore",
    "write_label_store",
    "REACTION_TYPES",
    "EngagementRecord",
    "iter_records",
    "parse_record",
    "write_records",
]
