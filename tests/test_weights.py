"""Weights in and out: our checkpoints, torchvision and hub state dicts, hubconf, export and extraction tools."""

import os
import pickle
import subprocess
import sys
import zipfile
from typing import List

import benchmark_layouts as layouts
import numpy as np
import published_layouts as published
import pytest
import torch
import torchvision
from conftest import ROOT

from vise_plugin.config import compose_config
from vise_plugin.errors import InputError
from vise_plugin.evaluation import run_benchmark
from vise_plugin.models import build_trunk, load_trunk_weights
from vise_plugin.models.weights import read_state_file


def _tool(name, *args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", name), *args], capture_output=True, text=True, cwd=ROOT
    )


def _official_layout():
    return torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])


def test_exported_state_dict_loads_strictly_into_the_official_layout(r50_checkpoint, tmp_path):
    checkpoint, trained = r50_checkpoint
    out = str(tmp_path / "vise_r50.pth")
    from vise_plugin.cli import main_export_hub  # what tools/export_hub.py runs

    assert main_export_hub([checkpoint, out]) == 0
    state = torch.load(out, weights_only=True)
    assert list(state) == list(_official_layout().state_dict())
    official = _official_layout()
    official.load_state_dict(state, strict=True)
    for key, value in trained.state_dict().items():
        assert torch.equal(state[key], value.cpu()), key
    hub = torch.hub.load(ROOT, "resnet50_250m", source="local", pretrained=True, weights=out)
    assert hub(torch.randn(2, 3, 224, 224)).shape == (2, 2048, 7, 7)
    assert torch.equal(hub.state_dict()["4.0.conv1.weight"], state["4.0.conv1.weight"])
    sys.path.insert(0, ROOT)
    import hubconf

    assert hubconf.resnet50_1m(pretrained=True, weights=out).eval()(torch.randn(1, 3, 224, 224)).shape == (
        1,
        2048,
        7,
        7,
    )


def test_trunk_loads_torchvision_and_wrapped_state_dicts(tmp_path):
    resnet = torchvision.models.resnet50()
    path = str(tmp_path / "tv.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet.state_dict().items()}}, path)
    trunk = load_trunk_weights(build_trunk("resnet50"), path)
    assert torch.equal(trunk.state_dict()["7.2.bn3.running_var"], resnet.layer4[2].bn3.running_var)
    with pytest.raises(InputError, match=r"tv.pth: does not fit the trunk .*check config.model.trunk"):
        load_trunk_weights(build_trunk("tiny"), path)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.faults
def test_weights_files_are_read_with_weights_only(tmp_path):
    path = str(tmp_path / "evil.pth")
    torch.save({"0.weight": _Boom()}, path)
    with pytest.raises(InputError, match=r"evil.pth: cannot read weights with torch.load\(weights_only=True\)"):
        load_trunk_weights(build_trunk("tiny"), path)
    with pytest.raises(InputError, match="weights file not found"):
        load_trunk_weights(build_trunk("tiny"), str(tmp_path / "missing.pth"))


def _no_code(*args, **kwargs):
    raise AssertionError("torch.jit.load runs the archive's code")


def test_openai_s_torchscript_clip_loads_into_the_clip_trunk_without_running_its_code(tmp_path, monkeypatch):
    path = str(tmp_path / "RN50.pt")
    written = published.openai_clip_rn50(path)  # a torch.jit.save archive, its weights in fp16
    monkeypatch.setattr(torch.jit, "load", _no_code)
    trunk = load_trunk_weights(build_trunk("clip_rn50"), path)  # strict: every key and shape
    state = trunk.state_dict()
    came_from = published.came_from(written, state)
    assert sorted(came_from.values()) == sorted(written.trunk_sources)  # the image tower, each tensor once
    assert all(src.rsplit(".", 1)[1] == k.rsplit(".", 1)[1] for k, src in came_from.items())
    stem = state["0.conv1.weight"]  # fp16 in the file
    assert stem.dtype == torch.float32 and torch.all(stem == published.number(stem))


class _WithSizes(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.sizes: List[int] = [224, 224]  # a typed list: data.pkl tags it with TorchScript's helpers

    def forward(self, x):
        return self.conv(x)


def test_a_scripted_module_with_typed_attributes_reads_as_its_state_dict(tmp_path):
    path = str(tmp_path / "scripted.pt")
    module = torch.jit.script(_WithSizes())
    torch.jit.save(module, path)
    state = read_state_file(path)
    assert list(state) == ["conv.weight", "conv.bias"]
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _with_record(path, name, data):
    """The zip at ``path`` with its record ``<archive>/<name>`` replaced by ``data``."""
    with zipfile.ZipFile(path) as src:
        records = {info.filename: src.read(info) for info in src.infolist()}
    with zipfile.ZipFile(path, "w") as out:
        for filename, content in records.items():
            out.writestr(filename, data if filename.endswith("/" + name) else content)


@pytest.mark.faults
def test_a_torchscript_archive_whose_pickle_would_run_code_is_refused_in_one_line(tmp_path):
    path = str(tmp_path / "RN50.pt")
    published.openai_clip_rn50(path)
    marker = str(tmp_path / "ran")
    for payload in (_Exec(marker), _Boom()):
        _with_record(path, "data.pkl", pickle.dumps({"visual.conv1.weight": payload}, protocol=2))
        with pytest.raises(InputError, match=r"^\S*RN50.pt: a TorchScript archive .*UnpicklingError.*") as refused:
            load_trunk_weights(build_trunk("tiny"), path)
        assert "\n" not in str(refused.value) and not os.path.exists(marker)


def test_benchmark_and_extraction_with_our_checkpoint(tiny_run, tmp_path, capsys):
    task = tiny_run["trainer"]
    checkpoint = os.path.join(tiny_run["run_dir"], "model_phase1.torch")  # the last: the trainer's final weights
    folder = layouts.image_folder(str(tmp_path / "if"))
    record = run_benchmark(
        compose_config(
            [
                "config=benchmark/linear/cub_r50",
                "config.benchmark.dataset.name=image_folder",
                f"config.benchmark.dataset.root={folder}",
                "config.model.trunk=tiny",
                f"config.model.weights={checkpoint}",
                "config.benchmark.image_size=32",
                "config.benchmark.num_workers=0",
                "config.benchmark.linear.epochs=5",
                f"config.run_dir={tmp_path / 'bench'}",
                f"config.benchmark.results_table={tmp_path / 'table.md'}",
            ]
        )
    )
    assert record["weights"] == checkpoint and record["dataset"] == "image_folder"
    with open(tmp_path / "table.md") as f:
        assert checkpoint in f.read()
    out = str(tmp_path / "feats")
    result = _tool(
        "extract_features.py",
        "config=benchmark/extract_r50",
        "config.model.trunk=tiny",
        f"config.model.weights={checkpoint}",
        f"config.extract.images={folder}/test",
        f"config.extract.output={out}",
        "config.extract.layer=res4",
        "config.benchmark.image_size=32",
        "config.benchmark.resize_ratio=1.0",
        "config.benchmark.num_workers=0",
    )
    assert result.returncode == 0, result.stderr
    feats = np.load(os.path.join(out, "features.npy"), mmap_mode="r")
    with open(os.path.join(out, "images.txt")) as f:
        names = f.read().split()
    assert feats.shape == (12, 128) and len(names) == 12 and names[0] == "anger/0.jpg"
    # the same image through the trained trunk, cut after res4, pooled
    from vise_plugin.data.transforms import eval_transform
    from vise_plugin.evaluation.datasets import ImageListDataset, read_image_folder
    from vise_plugin.evaluation.features import trunk_up_to

    data = read_image_folder(folder)
    first = data.paths.index("test/anger/0.jpg")
    image = ImageListDataset(data, [first], eval_transform(32, 1.0))[0][0]
    expected = trunk_up_to(task.base_model.trunk.eval(), "res4")(image[None]).mean(dim=(2, 3))[0]
    assert np.allclose(feats[0], expected.detach().numpy(), atol=1e-4)
    from vise_plugin.cli import run_cli
    from vise_plugin.evaluation.extract import extract_job

    code = run_cli(
        extract_job,
        ["config=benchmark/extract_r50", f"config.extract.images={tmp_path}/nope", f"config.extract.output={out}"],
    )
    assert code == 2 and capsys.readouterr().err.strip().endswith("nope: image folder or list not found")
