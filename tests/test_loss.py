import math

import pytest
import torch
from classy_vision.losses import SoftTargetCrossEntropyLoss, build_loss

from vise_plugin.losses import VisELoss


def test_comment_term_hand_computed():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    target = torch.tensor([[0.0, 0.25, 0.75]])
    log_z = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    expected = -(0.25 * (2 - log_z) + 0.75 * (3 - log_z))
    loss = VisELoss()({"comments": logits}, {"comments": target})
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_reaction_term_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    target = torch.tensor([1, 0])
    expected = (math.log(4 / 3) + math.log(2)) / 2
    assert VisELoss()({"reactions": logits}, {"reactions": target}).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_sum_of_eq_1_and_logged_terms():
    logits = {"comments": torch.tensor([[0.0, 0.0]]), "reactions": torch.tensor([[0.0, math.log(3.0)]])}
    target = {"comments": torch.tensor([[0.5, 0.5]]), "reactions": torch.tensor([1])}
    loss_fn = VisELoss(weights={"comments": 2.0, "reactions": 0.5})
    loss = loss_fn(logits, target)
    assert loss.item() == pytest.approx(2.0 * math.log(2) + 0.5 * math.log(4 / 3), rel=1e-6)
    assert loss_fn.last_values["comments"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert loss_fn.last_values["reactions"].item() == pytest.approx(math.log(4 / 3), rel=1e-6)


def test_comment_term_equals_classy_soft_target_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(16, 10)
    counts = torch.randint(0, 4, (16, 10)).float()
    counts[:, 0] += 1  # every post has at least one comment label
    target = counts / counts.sum(dim=1, keepdim=True)
    ours = VisELoss()({"comments": logits}, {"comments": target})
    classy = SoftTargetCrossEntropyLoss(normalize_targets=True)(logits, counts)
    assert ours.item() == pytest.approx(classy.item(), rel=1e-5)


def test_posts_without_comments_or_reactions_are_left_out():
    logits = {"comments": torch.randn(3, 4, requires_grad=True), "reactions": torch.randn(3, 5, requires_grad=True)}
    target = {
        "comments": torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0.5, 0.5, 0]]),
        "reactions": torch.tensor([-1, 2, -1]),
    }
    loss_fn = VisELoss()
    loss_fn(logits, target)
    kept = VisELoss()(
        {"comments": logits["comments"][[0, 2]], "reactions": logits["reactions"][[1]]},
        {"comments": target["comments"][[0, 2]], "reactions": target["reactions"][[1]]},
    )
    assert loss_fn(logits, target).item() == pytest.approx(kept.item(), rel=1e-6)


def test_batch_with_no_labels_gives_zero_loss_and_finite_gradients():
    logits = {"comments": torch.randn(2, 4, requires_grad=True), "reactions": torch.randn(2, 5, requires_grad=True)}
    target = {"comments": torch.zeros(2, 4), "reactions": torch.tensor([-1, -1])}
    loss = VisELoss()(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    for t in logits.values():
        assert torch.isfinite(t.grad).all()


def test_registered_with_classy_vision():
    loss = build_loss({"name": "vise_loss", "weights": {"comments": 1.0, "reactions": 3.0}})
    assert isinstance(loss, VisELoss) and loss.weights["reactions"] == 3.0


def test_missing_target_names_the_task():
    with pytest.raises(KeyError, match="reactions"):
        VisELoss()({"reactions": torch.zeros(1, 2)}, {"comments": torch.zeros(1, 2)})


def _web_tag_case():
    from vise_plugin.losses import WebTagLoss

    embeddings = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    output = {
        "tags": torch.randn(3, 5, requires_grad=True),
        "tag_embedding": torch.nn.functional.normalize(torch.randn(3, 8), dim=1).requires_grad_(),
    }
    target = {"tags": torch.tensor([[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0]])}
    return WebTagLoss(embeddings), output, target


def _vise_case():
    output = {"comments": torch.randn(3, 4, requires_grad=True), "reactions": torch.randn(3, 5, requires_grad=True)}
    target = {
        "comments": torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0.5, 0.5, 0]]),
        "reactions": torch.tensor([-1, 2, -1]),
    }
    return VisELoss(), output, target


@pytest.mark.parametrize("case", [_vise_case, _web_tag_case])
def test_losses_make_no_host_sync_forward_or_backward(case):
    from host_sync import HostSyncRecorder

    loss_fn, output, target = case()
    with HostSyncRecorder() as recorder:
        loss = loss_fn(output, target)
        loss.backward()
    assert recorder.calls == []
    assert torch.isfinite(loss) and all(torch.isfinite(t.grad).all() for t in output.values())


def test_the_host_sync_recorder_sees_item_and_mask_indexing():
    from host_sync import HostSyncRecorder

    x = torch.randn(4)
    with HostSyncRecorder() as recorder:
        bool((x > 0).any())
        x[x > 0].sum()
    assert len(recorder.calls) == 2, recorder.calls


def test_web_tag_loss_leaves_out_images_without_tags_and_is_zero_without_any():
    loss_fn, output, target = _web_tag_case()
    full = loss_fn(output, target)
    kept = loss_fn({k: v[[0, 2]] for k, v in output.items()}, {"tags": target["tags"][[0, 2]]})
    assert full.item() == pytest.approx(kept.item(), rel=1e-6)
    empty = loss_fn(output, {"tags": torch.zeros(3, 5)})
    empty.backward()
    assert empty.item() == 0.0 and all(torch.isfinite(t.grad).all() for t in output.values())


@pytest.mark.parametrize(
    "reactions, comments", [(torch.int32, torch.float64), (torch.int16, torch.float16), (torch.int8, torch.bfloat16)]
)
def test_targets_of_the_stores_dtypes_give_the_same_loss_with_no_host_sync(reactions, comments):
    from host_sync import HostSyncRecorder

    _, output, target = _vise_case()  # its comment targets are exact in every float dtype
    expected = VisELoss()(output, target)
    given = {"comments": target["comments"].to(comments), "reactions": target["reactions"].to(reactions)}
    with HostSyncRecorder() as recorder:  # reactions.npy is int32
        loss = VisELoss()(output, given)
        loss.backward()
    assert recorder.calls == []
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    "task, given, expected",
    [
        (
            "reactions",
            torch.zeros(3, 1, dtype=torch.int64),
            r"reactions target: expected integer class ids of shape \(3,\)"
            r" for logits \(3, 5\), given torch.int64 \(3, 1\)",
        ),
        ("reactions", torch.zeros(3), r"reactions target: expected integer class ids .* given torch.float32 \(3,\)"),
        (
            "reactions",
            torch.zeros(2, dtype=torch.int64),
            r"reactions target: .* shape \(3,\) .* given torch.int64 \(2,\)",
        ),
        (
            "comments",
            torch.zeros(3, 6),
            r"comments target: expected float .* shape \(3, 4\) for logits \(3, 4\), "
            r"given torch.float32 \(3, 6\)",
        ),
        (
            "comments",
            torch.zeros(3, 4, dtype=torch.int64),
            r"comments target: expected float .* given torch.int64 \(3, 4\)",
        ),
    ],
)
def test_a_target_of_the_wrong_shape_or_dtype_names_the_task_in_one_line(task, given, expected):
    from vise_plugin.errors import UserError

    _, output, target = _vise_case()
    with pytest.raises(UserError, match=expected) as failed:
        VisELoss()(output, {**target, task: given})
    assert "\n" not in str(failed.value) and str(failed.value).startswith("vise_loss: ")
