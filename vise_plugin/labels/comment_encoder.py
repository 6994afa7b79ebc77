"""phi_C of the paper: TF-IDF document embeddings of single comments."""

import hashlib
import json
import os
import re
from itertools import repeat
from typing import List, Optional, Sequence

import numpy as np
import scipy.sparse as sp

_SEPARATOR = "\x00"  # joins a chunk's comments; never part of a token


class TfidfCommentEncoder:
    """Comment strings -> L2-normalised TF-IDF rows ``(N, V)`` (scipy CSR, float32).

    :meth:`transform` gives the same matrix as scikit-learn's ``TfidfVectorizer.transform`` but
    tokenises a whole chunk in one regular-expression pass and builds the matrix with numpy,
    several times faster on short comments. Saved as a JSON vocabulary plus an ``idf.npy`` array
    (no pickles), so a label store can be reopened to label new posts identically.
    """

    kind = "tfidf"

    def __init__(
        self,
        max_features: Optional[int] = 100_000,
        min_df: int = 2,
        stop_words: Optional[str] = "english",
        sublinear_tf: bool = True,
    ):
        self.params = dict(max_features=max_features, min_df=min_df, stop_words=stop_words, sublinear_tf=sublinear_tf)
        from sklearn.feature_extraction.text import TfidfVectorizer  # loads in seconds: only when used

        self.vectorizer = TfidfVectorizer(dtype=np.float32, **self.params)
        self._lookup: Optional[dict] = None

    def fit(self, comments: Sequence[str]) -> "TfidfCommentEncoder":
        self.vectorizer.fit(comments)
        self._lookup = None
        return self

    @property
    def dim(self) -> int:
        return len(self.vectorizer.vocabulary_)

    def _prepare(self) -> None:
        self._lookup = dict(self.vectorizer.vocabulary_)
        self._lookup[_SEPARATOR] = -2
        self._findall = re.compile(self.vectorizer.token_pattern + "|" + _SEPARATOR).findall
        self._idf = self.vectorizer.idf_.astype(np.float32)

    def transform(self, comments: Sequence[str]) -> sp.csr_matrix:
        """``N`` comments -> ``(N, V)`` CSR float32, rows L2-normalised (all-zero for no known term)."""
        n = len(comments)
        joined = _SEPARATOR.join(comments)
        if n == 0 or joined.count(_SEPARATOR) != n - 1:  # a comment contains the separator itself
            return self.transform_reference(comments)
        if self._lookup is None:
            self._prepare()
        tokens = self._findall(joined.lower())
        ids = np.fromiter(map(self._lookup.get, tokens, repeat(-1)), np.int64, len(tokens))
        rows = np.cumsum(ids == -2)
        known = ids >= 0
        vocab = self.dim
        keys, counts = np.unique(rows[known] * vocab + ids[known], return_counts=True)
        row, col = np.divmod(keys, vocab)
        tf = counts.astype(np.float32)
        if self.params["sublinear_tf"]:
            tf = np.log(tf) + 1
        values = tf * self._idf[col]
        norms = np.sqrt(np.bincount(row, values.astype(np.float64) ** 2, minlength=n)).astype(np.float32)
        values /= norms[row]
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(row, minlength=n), out=indptr[1:])
        return sp.csr_matrix((values, col.astype(np.int32), indptr), shape=(n, vocab))

    def transform_reference(self, comments: Sequence[str]) -> sp.csr_matrix:
        """scikit-learn's own transform (the definition :meth:`transform` is tested against)."""
        return self.vectorizer.transform(comments).tocsr()

    def top_terms(self, vectors: np.ndarray, n: int = 8) -> List[List[str]]:
        """``(K, V)`` term-space vectors (e.g. centroids) -> the ``n`` heaviest terms of each."""
        terms = self.vectorizer.get_feature_names_out()
        order = np.argsort(-vectors, axis=1)[:, :n]
        return [[str(terms[j]) for j in row if vectors[i, j] > 0] for i, row in enumerate(order)]

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
        encoder.vectorizer = type(encoder.vectorizer)(
            dtype=np.float32, vocabulary=saved["vocabulary"], **saved["params"]
        )
        encoder.vectorizer.fit([""])  # fixes the vocabulary; idf is replaced below
        encoder.vectorizer.idf_ = np.load(os.path.join(folder, "comments_idf.npy"))
        return encoder
