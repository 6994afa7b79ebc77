import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vise_plugin.evaluation import extract_features, linear_eval, state_fingerprint
from vise_plugin.models import build_trunk


@pytest.mark.learning
def test_linear_protocol_matches_sklearn_logistic_regression_on_digits():
    """The identity "trunk": the grid on raw digits pixels lands within 1 point of LogisticRegression."""
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm].astype(np.float32), y[perm]
    fold = {"train": np.arange(0, 1000), "val": np.arange(1000, 1300), "test": np.arange(1300, len(x))}
    ours = linear_eval(x, y, fold, lrs=[0.01, 0.1], weight_decays=[0.0, 1e-3], epochs=50, batch_size=128)
    scaler = StandardScaler().fit(x[:1000])
    sk = LogisticRegression(max_iter=2000).fit(scaler.transform(x[:1000]), y[:1000])
    sk_acc = 100 * sk.score(scaler.transform(x[1300:]), y[1300:])
    assert ours["test_acc"] == pytest.approx(sk_acc, abs=1.0)
    # the chosen classifier, mapped back to raw features, gives the reported test accuracy
    w, b = ours["classifier"]
    assert 100 * np.mean((x[1300:] @ w.T + b).argmax(1) == y[1300:]) == pytest.approx(ours["test_acc"], abs=0.3)


def test_linear_protocol_reads_memory_mapped_and_concatenated_features(tmp_path):
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    np.save(tmp_path / "a.npy", x[:, :32])
    np.save(tmp_path / "b.npy", x[:, 32:])
    fold = {"train": np.arange(0, 1200), "val": np.arange(1200, 1400), "test": np.arange(1400, len(x))}
    blocks = [np.load(tmp_path / "a.npy", mmap_mode="r"), np.load(tmp_path / "b.npy", mmap_mode="r")]
    split = linear_eval(blocks, y, fold, [0.1], [0.0], epochs=5, batch_size=64)
    whole = linear_eval(x, y, fold, [0.1], [0.0], epochs=5, batch_size=64)
    assert split["test_acc"] == pytest.approx(whole["test_acc"], abs=0.01)


def test_multilabel_grid_trains_with_bce_and_reports_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 1] > 0], axis=1).astype(np.float32)
    fold = {"train": np.arange(200), "val": np.arange(200, 250), "test": np.arange(250, 300)}
    out = linear_eval(x, y, fold, [0.1], [0.0], epochs=30, batch_size=32, metrics=("map",))
    assert out["test_map"] > 95


def test_feature_extraction_leaves_the_trunk_unchanged(tmp_path):
    trunk = build_trunk("tiny").train()
    before = state_fingerprint(trunk)
    data = torch.utils.data.TensorDataset(torch.randn(10, 3, 32, 32), torch.arange(10))
    feats = extract_features(trunk, data, batch_size=4)
    assert feats.shape == (10, 256)
    assert state_fingerprint(trunk) == before and trunk.training
    mapped = extract_features(trunk, data, batch_size=4, layer="res4", pool="none", out=str(tmp_path / "f.npy"))
    assert isinstance(mapped, np.memmap) and mapped.shape == (10, 128 * 8 * 8)
    assert not (tmp_path / "f.npy.tmp").exists()
