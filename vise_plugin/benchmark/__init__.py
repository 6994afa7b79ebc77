from .features import extract_features, state_fingerprint
from .linear_classifiers import LinearClassifierGrid, linear_eval

__all__ = ["extract_features", "state_fingerprint", "LinearClassifierGrid", "linear_eval"]
