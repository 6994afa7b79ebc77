from .datasets import DATASET_READERS, LabelledImages, read_benchmark_dataset
from .features import FeatureCache, extract_features, state_fingerprint, trunk_up_to
from .finetune import FinetuneModel, FinetuneSettings, finetune_eval
from .linear_classifiers import LinearClassifierGrid, linear_eval
from .metrics import METRICS, accuracy, mean_average_precision, roc_auc
from .runner import evaluate_trunk, run_benchmark

__all__ = ["DATASET_READERS", "LabelledImages", "read_benchmark_dataset", "FeatureCache", "extract_features",
           "state_fingerprint", "trunk_up_to", "FinetuneModel", "FinetuneSettings", "finetune_eval",
           "LinearClassifierGrid", "linear_eval", "METRICS", "accuracy", "mean_average_precision", "roc_auc",
           "evaluate_trunk", "run_benchmark"]
