import pytest
import torch
import torchvision
from classy_vision.heads import build_head
from classy_vision.models import build_model

from vise_plugin.models import (
    VisEModel,
    VisEMultiHead,
    build_trunk,
    trunk_out_channels,
)
from vise_plugin.registry import TRUNKS

TASKS = {"comments": 7, "reactions": 3}


@pytest.mark.parametrize("shape", [(4, 16, 5, 5), (4, 16)])
def test_multi_head_returns_one_logit_tensor_per_task(shape):
    head = VisEMultiHead(16, TASKS)
    out = head(torch.randn(*shape))
    assert set(out) == set(TASKS)
    assert out["comments"].shape == (4, 7) and out["reactions"].shape == (4, 3)


def test_multi_head_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expected features"):
        VisEMultiHead(16, TASKS)(torch.randn(2, 8, 3, 3))


def test_multi_head_registered():
    head = build_head({"name": "vise_multi_head", "unique_id": "vise", "in_features": 32, "tasks": TASKS})
    assert isinstance(head, VisEMultiHead) and head(torch.randn(2, 32))["comments"].shape == (2, 7)


@pytest.mark.parametrize(
    "name,size,channels,spatial",
    [
        ("tiny", 32, 256, 4),
        ("resnet50", 224, 2048, 7),
        ("resnet101", 64, 2048, 2),
        ("resnext101_32x16d", 64, 2048, 2),
    ],
)
def test_trunk_output_shapes(name, size, channels, spatial):
    assert name in TRUNKS
    trunk = build_trunk(name).eval()
    with torch.no_grad():
        out = trunk(torch.randn(1, 3, size, size))
    assert out.shape == (1, channels, spatial, spatial)
    assert trunk_out_channels(trunk) == channels


def test_resnet50_trunk_has_the_official_hub_keys():
    official = torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])
    assert list(build_trunk("resnet50").state_dict()) == list(official.state_dict())


def test_vise_model_end_to_end_and_registered():
    model = build_model({"name": "vise_model", "trunk": "tiny", "tasks": TASKS})
    assert isinstance(model, VisEModel)
    out = model(torch.randn(2, 3, 32, 32))
    assert out["comments"].shape == (2, 7) and out["reactions"].shape == (2, 3)


def test_heads_run_in_fp32_under_fp16_autocast():
    model = VisEModel.build(
        "tiny", [{"name": "vise_multi_head", "tasks": TASKS}, {"name": "web_tag_head", "num_tags": 4, "embed_dim": 6}]
    )
    with torch.no_grad():
        model.head.heads[0].fcs["comments"].weight.mul_(1e6)  # logits far past fp16's 65504
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(torch.randn(2, 3, 32, 32))
        trunk_dtype = model.trunk(torch.randn(2, 3, 32, 32)).dtype
    assert trunk_dtype == torch.float16  # the trunk still gets the speed-up
    assert all(v.dtype == torch.float32 for v in out.values())
    assert torch.isfinite(out["comments"]).all() and out["comments"].abs().max() > 65504
