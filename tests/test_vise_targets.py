"""The public reuse API: VisETargets by path, collate_targets, and VisELoss over several views."""

import os

import numpy as np
import pytest
import torch

from vise_plugin import VisELoss, VisEMultiHead, VisETargets, collate_targets
from vise_plugin.errors import InputError
from vise_plugin.labels.store import write_label_store


@pytest.fixture
def store(tmp_path):
    """Three posts under ``<tmp>/images``: a (comments 0 x2, 3 x1; reaction 2), sub/b (none; -1), c (4 x5; 0)."""
    pairs = [np.array([[0, 2], [3, 1]]), np.zeros((0, 2), int), np.array([[4, 5]])]
    root = str(tmp_path / "images")
    write_label_store(
        str(tmp_path / "labels"),
        ["p1", "p2", "p3"],
        ["a.jpg", "sub/b.jpg", "c.jpg"],
        pairs,
        np.array([2, -1, 0]),
        {"tasks": {"comments": {"k": 5}, "reactions": {"k": 3}}, "image_root": root},
    )
    return str(tmp_path / "labels"), root


def test_open_takes_the_image_root_and_tasks_from_the_store(store):
    labels, root = store
    targets = VisETargets.open(labels)
    assert targets.image_root == root
    assert targets.tasks == {"comments": 5, "reactions": 3}
    assert len(targets) == 3 and targets.path(1) == "sub/b.jpg"
    assert VisETargets.open(labels, image_root="/elsewhere").image_root == "/elsewhere"


def test_batch_stacks_targets_of_absolute_and_relative_paths(store):
    labels, root = store
    targets = VisETargets.open(labels)
    batch = targets.batch([os.path.join(root, "c.jpg"), "./a.jpg", "sub//b.jpg"])
    assert batch["comments"].dtype == torch.float32 and batch["comments"].shape == (3, 5)
    assert batch["reactions"].dtype == torch.int64 and batch["reactions"].tolist() == [0, 2, -1]
    assert torch.allclose(batch["comments"][0], torch.tensor([0, 0, 0, 0, 1.0]))
    assert torch.allclose(batch["comments"][1], torch.tensor([2 / 3, 0, 0, 1 / 3, 0]))
    assert batch["comments"][2].sum() == 0


def test_a_path_the_store_does_not_hold_is_an_error_naming_it_unless_asked_for_empty_targets(store):
    labels, _ = store
    targets = VisETargets.open(labels)
    with pytest.raises(InputError, match=r"2 image path\(s\) not in the label store \(d\.jpg, e\.jpg;") as error:
        targets.batch(["a.jpg", "d.jpg", "e.jpg"])
    assert labels in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(InputError, match="other/a.jpg"):
        targets.for_path("other/a.jpg")
    empty = targets.batch(["a.jpg", "d.jpg"], missing="empty")
    assert empty["reactions"].tolist() == [2, -1] and empty["comments"][1].sum() == 0
    with pytest.raises(ValueError, match="missing='skip'"):
        targets.batch(["a.jpg"], missing="skip")
    with pytest.raises(ValueError, match="missing='skip'"):
        targets.for_path("a.jpg", missing="skip")


def test_check_paths_returns_the_share_held_and_fails_below_the_minimum(store):
    labels, root = store
    targets = VisETargets.open(labels)
    paths = ["a.jpg", "c.jpg", "x.jpg", "y.jpg"]
    assert targets.check_paths(paths, min_fraction=0.5) == 0.5
    with pytest.raises(InputError, match=r"2 of 4 image path\(s\) not in the label store \(x\.jpg, y\.jpg;.*75%"):
        targets.check_paths(paths, min_fraction=0.75)
    assert targets.check_paths([os.path.join(root, "a.jpg")]) == 1.0


def test_collate_for_a_data_loader_replaces_paths_by_targets(store):
    labels, _ = store
    targets = VisETargets.open(labels)
    dataset = [(torch.full((3, 4, 4), float(i)), path) for i, path in enumerate(["a.jpg", "c.jpg"])]
    images, batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=targets.collate)))
    assert images.shape == (2, 3, 4, 4) and images[1].eq(1).all()
    assert batch["reactions"].tolist() == [2, 0]
    views = [([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)], 0, "sub/b.jpg")]
    (first, second), label, batch = targets.collate(views)
    assert second.shape == (1, 3, 2, 2) and label.tolist() == [0] and batch["reactions"].tolist() == [-1]


def test_collate_targets_stacks_and_refuses_mixed_tasks():
    one = {"comments": torch.tensor([1.0, 0.0]), "reactions": torch.tensor(1)}
    stacked = collate_targets([one, one])
    assert stacked["comments"].shape == (2, 2) and stacked["reactions"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="item 1 has the tasks"):
        collate_targets([one, {"comments": torch.zeros(2)}])


def test_the_loss_over_two_views_averages_them_and_logs_both(store):
    labels, _ = store
    targets = VisETargets.open(labels)
    torch.manual_seed(0)
    head = VisEMultiHead(6, tasks=targets.tasks)
    batch = targets.batch(["a.jpg", "sub/b.jpg", "c.jpg"])
    first, second = head(torch.randn(3, 6)), head(torch.randn(3, 6, 2, 2))
    loss_fn = VisELoss()
    one = loss_fn(first, batch)
    first_values = dict(loss_fn.last_values)
    two = loss_fn(second, batch)
    second_values = dict(loss_fn.last_values)
    assert torch.allclose(loss_fn([first, second], batch), (one + two) / 2)
    assert set(loss_fn.last_values) == set(targets.tasks)
    for task in targets.tasks:
        assert torch.allclose(loss_fn.last_values[task], (first_values[task] + second_values[task]) / 2)
        assert not torch.allclose(first_values[task], second_values[task])
    with pytest.raises(ValueError, match="no model output"):
        loss_fn([], batch)
