"""phi_C of the paper: TF-IDF document embeddings of single comments."""

import hashlib
import json
import os
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer


class TfidfCommentEncoder:
    """Comment strings -> L2-normalised TF-IDF rows ``(N, V)`` (scipy CSR, float32).

    Saved as a JSON vocabulary plus an ``idf.npy`` array (no pickles), so a label store can be
    reopened to label new posts with exactly the fitted vocabulary.
    """

    def __init__(
        self,
        max_features: Optional[int] = 100_000,
        min_df: int = 2,
        stop_words: Optional[str] = "english",
        sublinear_tf: bool = True,
    ):
        self.params = dict(max_features=max_features, min_df=min_df, stop_words=stop_words, sublinear_tf=sublinear_tf)
        self.vectorizer = TfidfVectorizer(dtype=np.float32, **self.params)

    def fit(self, comments: Sequence[str]) -> "TfidfCommentEncoder":
        self.vectorizer.fit(comments)
        return self

    @property
    def dim(self) -> int:
        return len(self.vectorizer.vocabulary_)

    def transform(self, comments: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer.transform(comments).tocsr()

    def save(self, folder: str) -> str:
        """Writes ``comments_vocabulary.json`` and ``comments_idf.npy``; returns their sha256."""
        vocab = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        blob = json.dumps({"params": self.params, "vocabulary": vocab}, sort_keys=True).encode()
        with open(os.path.join(folder, "comments_vocabulary.json"), "wb") as f:
            f.write(blob)
        idf = self.vectorizer.idf_.astype(np.float64)
        np.save(os.path.join(folder, "comments_idf.npy"), idf)
        return hashlib.sha256(blob + idf.tobytes()).hexdigest()

    @classmethod
    def load(cls, folder: str) -> "TfidfCommentEncoder":
        with open(os.path.join(folder, "comments_vocabulary.json")) as f:
            saved = json.load(f)
        encoder = cls(**saved["params"])
        encoder.vectorizer = TfidfVectorizer(dtype=np.float32, vocabulary=saved["vocabulary"], **saved["params"])
        encoder.vectorizer.fit([""])  # fixes the vocabulary; idf is replaced below
        encoder.vectorizer.idf_ = np.load(os.path.join(folder, "comments_idf.npy"))
        return encoder
