"""The package as a plugin: a wheel that holds the whole engine and the configs, run from any folder,
and a user's own head and loss chosen by config alone, in one process, under torchrun and on
submitit's local executor."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from conftest import ROOT, torchrun_command

USER_MODULE = '''
"""A user's parts: a two-layer reactions head and a label-smoothed reactions loss."""
import torch.nn as nn
import torch.nn.functional as F
from classy_vision.heads import ClassyHead
from classy_vision.losses import ClassyLoss

from vise_plugin.registry import register_head, register_loss


@register_head("two_layer_reactions")
class TwoLayerReactions(ClassyHead):
    def __init__(self, in_features, num_classes, hidden=32):
        super().__init__("two_layer_reactions", None)
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    @classmethod
    def from_config(cls, config):
        return cls(config["in_features"], config["targets"]["reactions"]["num_classes"], config.get("hidden", 32))

    def forward(self, x):
        return {"reactions": self.mlp(x.mean(dim=(2, 3)))}


@register_loss("smoothed_reactions")
class SmoothedReactions(ClassyLoss):
    def __init__(self, smoothing=0.1):
        super().__init__()
        self.smoothing = smoothing

    @classmethod
    def from_config(cls, config):
        return cls(config.get("smoothing", 0.1))

    def forward(self, output, target):
        keep = target["reactions"] >= 0
        loss = F.cross_entropy(output["reactions"], target["reactions"].clamp_min(0), reduction="none",
                               label_smoothing=self.smoothing)
        return (loss * keep).sum() / keep.sum().clamp_min(1)
'''

USER_EXPERIMENT = """
# @package _global_
defaults:
  - /demo/vise_tiny
  - _self_
config:
  name: my_tiny
  imports: [my_parts]
  model:
    heads: [{name: two_layer_reactions, hidden: 16}]
  loss: {name: smoothed_reactions, smoothing: 0.1}
  optimizer: {num_epochs: 1}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed (not editable) into a folder of its own, and an
    empty working folder outside the checkout with the user's module and experiment file."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache", "venv", ".venv"
        ),
    )
    wheels = base / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(wheels.glob("vise_plugin-*.whl"))
    target = base / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    work = base / "work"
    (work / "configs").mkdir(parents=True)
    (work / "my_parts.py").write_text(textwrap.dedent(USER_MODULE))
    (work / "configs" / "my_tiny.yaml").write_text(textwrap.dedent(USER_EXPERIMENT))
    env = {**os.environ, "PYTHONPATH": str(target)}
    return {"wheel": wheel, "target": target, "work": work, "env": env}


def _run(cmd, installed, timeout=300):
    proc = subprocess.run(
        cmd, cwd=installed["work"], env=installed["env"], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def _check_run(run_dir, iterations):
    state = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert state["position"]["iteration"] == iterations
    assert {"head.mlp.0.weight", "head.mlp.2.weight"} <= set(state["model"]) and state["model"][
        "head.mlp.0.weight"
    ].shape[0] == 16
    with open(os.path.join(run_dir, "stdout.json")) as f:
        records = [json.loads(line) for line in f]
    assert records[-1]["iteration"] == iterations and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


def test_the_wheel_holds_the_engine_and_the_configs(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for name in (
        "vise_plugin/engine/__init__.py",
        "vise_plugin/engine/trainer.py",
        "vise_plugin/engine/hooks/log_hook.py",
        "vise_plugin/configs/defaults.yaml",
        "vise_plugin/configs/demo/vise_tiny.yaml",
        "vise_plugin/configs/pretrain/vise_r50_250m.yaml",
        "vise_plugin/configs/benchmark/linear/cub_r50.yaml",
        "vise_plugin/integrations/vissl.py",
        "vise_plugin/integrations/vissl_configs/config/vissl/vise_r50_1m.yaml",
    ):
        assert name in names, name
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(installed["wheel"]).read(entry_points).decode()
    assert (
        "vise-run = vise_plugin.cli:main_run" in scripts
        and "vise-labels = vise_plugin.cli:main_generate_labels" in scripts
    )


def test_from_an_empty_folder_the_installed_package_trains_a_users_head_and_loss(installed, tiny_world):
    run_dir = installed["work"] / "run_one"
    script = (
        "import runpy, sys, vise_plugin; print('package at', vise_plugin.__file__); "
        "sys.argv = sys.argv[1:]; runpy.run_module('vise_plugin.run', run_name='__main__')"
    )
    out = _run(
        [
            sys.executable,
            "-c",
            script,
            "vise_plugin.run",
            "config=my_tiny",
            f"config.data.labels={tiny_world['labels']}",
            f"config.run_dir={run_dir}",
        ],
        installed,
    )
    assert f"package at {installed['target']}" in out  # the wheel's copy, not the checkout
    _check_run(run_dir, (90 + 7) // 8)
    assert "two_layer_reactions" in out


def test_a_users_parts_under_torchrun_and_submitit(installed, tiny_world):
    common = ["config=my_tiny", f"config.data.labels={tiny_world['labels']}"]
    run_dir = installed["work"] / "run_torchrun"
    _run([*torchrun_command("-m", "vise_plugin.run", *common, f"config.run_dir={run_dir}")], installed)
    _check_run(run_dir, (45 + 7) // 8)
    run_dir = installed["work"] / "run_submitit"
    _run(
        [
            sys.executable,
            "-m",
            "vise_plugin.run",
            *common,
            f"config.run_dir={run_dir}",
            "config.slurm.use_slurm=true",
            "config.slurm.cluster=local",
            "config.slurm.wait=true",
            "config.distributed.num_proc_per_node=2",
        ],
        installed,
    )
    _check_run(run_dir, (45 + 7) // 8)


def test_an_import_that_fails_is_one_line_naming_the_module(capsys, tmp_path):
    from vise_plugin.cli import main_run

    code = main_run(["config=demo/vise_tiny", "config.imports=[no_such_module_here]", f"config.run_dir={tmp_path}"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: config.imports: cannot import no_such_module_here "
        "(ModuleNotFoundError: No module named 'no_such_module_here')"
    )
