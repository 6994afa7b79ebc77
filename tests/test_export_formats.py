"""Exported weights read the way other projects read them: safetensors files, and the timm / torchvision
layout that timm's ``create_model(pretrained=True, pretrained_cfg_overlay={"file": ...})`` loads strictly."""

import os
import shutil
import socket

import pytest
import safetensors
import safetensors.torch
import torch
import torchvision
from conftest import ROOT

from vise_plugin.cli import main_export_hub
from vise_plugin.errors import InputError
from vise_plugin.models import build_trunk, load_trunk_weights
from vise_plugin.models.weight_formats import hub_to_torchvision
from vise_plugin.registry import WEIGHT_FORMATS


@pytest.fixture(scope="module")
def r50_trunk_checkpoint(tmp_path_factory):
    """A project checkpoint (the layout of ``checkpoint.torch``) of a ResNet-50 trunk whose every tensor,
    BatchNorm statistics and counters included, differs from a fresh model's; its path and trunk state."""
    torch.manual_seed(0)
    trunk = build_trunk("resnet50")
    with torch.no_grad():
        for key, value in trunk.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key else torch.randn_like(value) * 0.05)
            else:
                value.fill_(7)
    path = str(tmp_path_factory.mktemp("r50") / "checkpoint.torch")
    torch.save(WEIGHT_FORMATS.get("vise_checkpoint").example(trunk.state_dict()), path)
    return path, {k: v.clone() for k, v in trunk.state_dict().items()}


def _no_network(*args, **kwargs):
    raise AssertionError("the load went to the network")


def test_a_timm_export_in_safetensors_loads_strictly_into_timm_s_resnet50_without_the_network(
    r50_trunk_checkpoint, tmp_path, monkeypatch
):
    timm = pytest.importorskip("timm", reason="timm is not installed (it is in the test extra)")
    from timm.models import _builder

    checkpoint, trunk = r50_trunk_checkpoint
    out = str(tmp_path / "vise_r50.safetensors")
    assert main_export_hub([checkpoint, out, "--format", "timm"]) == 0
    with safetensors.safe_open(out, "pt") as f:  # a real safetensors file, Hugging Face's metadata
        assert f.metadata() == {"format": "pt"} and "conv1.weight" in f.keys()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    for fetch in ("load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file"):
        monkeypatch.setattr(_builder, fetch, _no_network)
    model = timm.create_model("resnet50", pretrained=True, pretrained_cfg_overlay={"file": out})  # strict=True
    loaded = model.state_dict()
    expected = hub_to_torchvision(trunk)
    assert sorted(loaded) == sorted([*expected, "fc.weight", "fc.bias"])
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert not loaded["fc.weight"].any() and not loaded["fc.bias"].any()  # the zero classifier

    features = timm.create_model(
        "resnet50", pretrained=True, pretrained_cfg_overlay={"file": out}, num_classes=0
    ).eval()  # the trunk and global pooling, fc left out
    ours = load_trunk_weights(build_trunk("resnet50"), checkpoint).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(features.forward_features(image), ours(image), atol=1e-5)
        assert torch.allclose(features(image), ours(image).mean(dim=(2, 3)), atol=1e-5)


@pytest.mark.parametrize("fmt", ["hub", "torchvision", "timm"])
def test_the_project_reads_back_its_own_safetensors_export(fmt, r50_trunk_checkpoint, tmp_path):
    checkpoint, trunk = r50_trunk_checkpoint
    out = str(tmp_path / f"{fmt}.safetensors")
    assert main_export_hub([checkpoint, out, "--format", fmt]) == 0
    target = load_trunk_weights(build_trunk("resnet50"), out)  # what config.model.weights runs: strict
    assert all(torch.equal(v, trunk[k]) for k, v in target.state_dict().items())
    renamed = str(tmp_path / f"{fmt}.bin")  # recognised from its first bytes, whatever its name
    shutil.copy(out, renamed)
    target = load_trunk_weights(build_trunk("resnet50"), renamed)
    assert all(torch.equal(v, trunk[k]) for k, v in target.state_dict().items())


def test_a_hub_export_in_safetensors_loads_through_torch_hub(r50_trunk_checkpoint, tmp_path):
    checkpoint, trunk = r50_trunk_checkpoint
    out = str(tmp_path / "vise_r50_hub.safetensors")
    assert main_export_hub([checkpoint, out, "--format", "hub"]) == 0
    hub = torch.hub.load(ROOT, "resnet50_1m", source="local", pretrained=True, weights=out)  # strict
    assert all(torch.equal(v, trunk[k]) for k, v in hub.state_dict().items())


def test_a_torchvision_export_loads_strictly_into_torchvision_s_resnet50(r50_trunk_checkpoint, tmp_path):
    checkpoint, trunk = r50_trunk_checkpoint
    for name in ("tv.safetensors", "tv.pth"):
        out = str(tmp_path / name)
        assert main_export_hub([checkpoint, out, "--format", "torchvision"]) == 0
        state = (
            safetensors.torch.load_file(out) if name.endswith(".safetensors") else torch.load(out, weights_only=True)
        )
        model = torchvision.models.resnet50()
        model.load_state_dict(state, strict=True)
        assert torch.equal(model.layer4[2].bn3.running_var, trunk["7.2.bn3.running_var"])


@pytest.mark.faults
def test_a_corrupt_or_truncated_safetensors_file_is_one_line_naming_it(r50_trunk_checkpoint, tmp_path, capsys):
    checkpoint, _ = r50_trunk_checkpoint
    good = str(tmp_path / "good.safetensors")
    assert main_export_hub([checkpoint, good, "--format", "timm"]) == 0
    with open(good, "rb") as f:
        data = f.read()
    damaged = {
        "cut.safetensors": data[: len(data) // 2],  # a copy cut short
        "header.safetensors": data[:6],  # not even the header's length
        "garbage.safetensors": b"\xff" * 64,  # a header length beyond the file
    }
    for name, content in damaged.items():
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(content)
        with pytest.raises(InputError, match=rf"^\S*{name}: cannot read safetensors weights \(SafetensorError: ") as e:
            load_trunk_weights(build_trunk("resnet50"), path)
        assert "\n" not in str(e.value)
    assert main_export_hub([str(tmp_path / "cut.safetensors"), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "cut.safetensors: cannot read safetensors weights" in err
    assert "\n" not in err and not os.path.exists(tmp_path / "out.pth")


def test_exports_a_layout_cannot_hold_are_one_line_refusals(r50_trunk_checkpoint, tmp_path, capsys):
    checkpoint, _ = r50_trunk_checkpoint
    out = str(tmp_path / "vissl.safetensors")
    assert main_export_hub([checkpoint, out, "--format", "vissl"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("vissl.safetensors: a vissl file is nested, which safetensors cannot hold; name it .torch or .pth")
    )
    tiny = str(tmp_path / "tiny.torch")
    torch.save(
        {
            "kind": "vise_pretraining",
            "trunk": "tiny",
            "model": {f"trunk.{k}": v for k, v in build_trunk("tiny").state_dict().items()},
        },
        tiny,
    )
    assert main_export_hub([tiny, str(tmp_path / "tiny.safetensors"), "--format", "timm"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "tiny.torch: the timm layout holds a torchvision ResNet (resnet50, resnet101, resnext101_32x16d), "
            "not the tiny trunk"
        )
    )
    assert os.listdir(tmp_path) == ["tiny.torch"]  # nothing written, not even a temporary file
