import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vise_plugin.benchmark import extract_features, linear_eval, state_fingerprint
from vise_plugin.models import build_trunk


def test_linear_protocol_matches_sklearn_logistic_regression_on_digits():
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm].astype(np.float32), y[perm]
    tr, va, te = slice(0, 1000), slice(1000, 1300), slice(1300, None)
    ours = linear_eval((x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]), lrs=[0.01, 0.1], weight_decays=[0.0, 1e-3],
                       epochs=50, batch_size=128)
    scaler = StandardScaler().fit(x[tr])
    sk = LogisticRegression(max_iter=2000).fit(scaler.transform(x[tr]), y[tr])
    sk_acc = 100 * sk.score(scaler.transform(x[te]), y[te])
    assert ours["test_acc"] == pytest.approx(sk_acc, abs=1.0)


def test_feature_extraction_leaves_the_trunk_unchanged():
    trunk = build_trunk("tiny").train()
    before = state_fingerprint(trunk)
    data = torch.utils.data.TensorDataset(torch.randn(10, 3, 32, 32), torch.arange(10))
    feats, labels = extract_features(trunk, data, batch_size=4)
    assert feats.shape == (10, 256) and list(labels) == list(range(10))
    assert state_fingerprint(trunk) == before and trunk.training
