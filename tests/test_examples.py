"""The examples in examples/ train, and their VisE loss falls against the same run at lr 0.

Each example's ``train`` draws its weights, batches and augmentations from one seed, so the run at lr 0
sees the same batches with the initial weights: the step-by-step difference of the two VisE losses
is what training changed, free of batch-to-batch noise.
"""

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from vise_plugin.demo import example_store

pytestmark = pytest.mark.learning


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """The examples' own store: 256 synthetic posts labelled with labels/small."""
    return example_store(str(tmp_path_factory.mktemp("example") / "labels"))


def _fall(history, untrained):
    """The mean over the second half of the steps of (VisE loss trained - VisE loss at lr 0)."""
    half = len(history) // 2
    differences = [a["vise"] - b["vise"] for a, b in zip(history, untrained)][half:]
    return sum(differences) / len(differences)


def test_lightly_simclr_with_vise_lowers_the_vise_loss(labels):
    pytest.importorskip("lightly", reason="lightly is not installed (pip install -e '.[lightly]')")
    example = _example("lightly_simclr_vise")
    trained = example.train(labels, steps=40, lr=1e-3, batch_size=16)
    untrained = example.train(labels, steps=40, lr=0.0, batch_size=16)
    assert trained[0] == untrained[0]  # the same weights and batch
    assert all(step["simclr"] > 0 for step in trained)
    assert _fall(trained, untrained) < -0.2, (trained, untrained)  # about -0.6; -0.05 to +0.2 when cut off


@pytest.mark.parametrize("backbone", ["torchvision", "timm"])
def test_the_plain_pytorch_loop_lowers_the_vise_loss(labels, backbone):
    if backbone == "timm":
        pytest.importorskip("timm", reason="timm is not installed (pip install -e '.[timm]')")
    example = _example("plain_pytorch_vise")
    trained = example.train(labels, steps=30, lr=1e-3, batch_size=32, backbone=backbone)
    untrained = example.train(labels, steps=30, lr=0.0, batch_size=32, backbone=backbone)
    assert trained[0] == untrained[0]
    assert set(trained[0]) == {"vise", "comments", "reactions"}
    assert _fall(trained, untrained) < -0.3, (trained, untrained)  # about -1.1 (torchvision), -0.6 (timm)


def test_an_example_runs_as_a_script_and_writes_its_own_store(tmp_path):
    labels = str(tmp_path / "labels")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "plain_pytorch_vise.py"), "--labels", labels, "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.exists(os.path.join(labels, "meta.json"))
    assert "step   1  vise " in result.stdout
