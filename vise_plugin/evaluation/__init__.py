from vise_plugin.evaluation.datasets import LabelledImages, read_benchmark_dataset
from vise_plugin.evaluation.features import extract_features, state_fingerprint, trunk_up_to
from vise_plugin.evaluation.finetune import FinetuneModel, FinetuneSettings, finetune_eval
from vise_plugin.evaluation.linear_classifiers import LinearClassifierGrid, linear_eval
from vise_plugin.evaluation.metrics import accuracy, mean_average_precision, roc_auc
from vise_plugin.evaluation.runner import evaluate_trunk, run_benchmark
from vise_plugin.feature_cache import FeatureCache

__all__ = [
    "LabelledImages",
    "read_benchmark_dataset",
    "FeatureCache",
    "extract_features",
    "state_fingerprint",
    "trunk_up_to",
    "FinetuneModel",
    "FinetuneSettings",
    "finetune_eval",
    "LinearClassifierGrid",
    "linear_eval",
    "accuracy",
    "mean_average_precision",
    "roc_auc",
    "evaluate_trunk",
    "run_benchmark",
]
