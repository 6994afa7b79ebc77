import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from vise_plugin.config import compose_config
from vise_plugin.errors import ConfigError


def test_override_and_add_grammar():
    cfg = compose_config(["config=pretrain/vise_r50_250m", "config.optimizer.lr=0.2", "+config.new_key=1"]).config
    assert cfg.optimizer.lr == 0.2 and cfg.new_key == 1 and cfg.model.trunk == "resnet50"


def test_experiment_files_state_only_what_differs():
    cfg = compose_config(["config=pretrain/vise_rx101_32x16d_250m"]).config
    assert cfg.model.trunk == "resnext101_32x16d"
    assert cfg.data.batch_size_per_gpu * 32 == 1536  # the paper's mini-batch on 32 GPUs
    assert list(cfg.model.heads) == ["vise_multi_head"] and list(cfg.data.sources) == ["engagement_labels"]


@pytest.mark.parametrize(
    "name,heads,subset",
    [
        ("pretrain/ablations/comments_only", [{"name": "vise_multi_head", "tasks": ["comments"]}], None),
        ("pretrain/ablations/reactions_only", [{"name": "vise_multi_head", "tasks": ["reactions"]}], None),
        ("pretrain/ablations/data_123k", ["vise_multi_head"], 123000),
    ],
)
def test_ablations(name, heads, subset):
    from omegaconf import OmegaConf

    cfg = compose_config([f"config={name}"]).config
    assert OmegaConf.to_container(cfg.model.heads) == heads and cfg.data.subset == subset


def test_an_old_key_says_what_replaced_it():
    with pytest.raises(
        ConfigError,
        match=r"config.model.tasks in override 'config.model.tasks=\[comments\]' was "
        r"replaced by config.model.heads",
    ):
        compose_config(["config=pretrain/vise_r50_1m", "config.model.tasks=[comments]"])


def test_misspelt_override_names_nearest_key():
    with pytest.raises(
        ConfigError, match=r"unknown key 'config.optimizer.lrr'.*nearest valid key: config.optimizer.lr\)"
    ):
        compose_config(["config=pretrain/vise_r50_250m", "config.optimizer.lrr=0.2"])


def test_misspelt_key_in_experiment_file(tmp_path):
    (tmp_path / "defaults.yaml").write_text("config:\n  optimizer:\n    lr: 0.1\n")
    (tmp_path / "exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /defaults\n  - _self_\nconfig:\n  optimizer:\n    lrate: 0.3\n"
    )
    with pytest.raises(ConfigError, match=r"unknown key 'config.optimizer.lrate'.*config.optimizer.lr"):
        compose_config(["config=exp"], root=tmp_path)


def test_config_dirs_with_a_home_folder_are_searched_and_a_missing_one_is_named(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /demo/vise_tiny\n  - _self_\nconfig:\n  optimizer:\n    lr: 0.123\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("VISE_CONFIG_DIRS", raising=False)
    assert compose_config(["config=my_exp", "config.config_dirs=['~/mine']"]).config.optimizer.lr == 0.123
    with pytest.raises(ConfigError, match=r"^config.config_dirs: ~/missing is not a folder$"):
        compose_config(["config=my_exp", "config.config_dirs=['~/mine','~/missing']"])
    monkeypatch.setenv("VISE_CONFIG_DIRS", f"~/mine{os.pathsep}~/gone")
    with pytest.raises(ConfigError, match=r"^\$VISE_CONFIG_DIRS: ~/gone is not a folder$"):
        compose_config(["config=my_exp"])


def test_unknown_experiment():
    with pytest.raises(ConfigError, match="nearest: pretrain/vise_r50_250m"):
        compose_config(["config=pretrain/vise_r50_25m"])


def test_vise_1_2m_is_a_seeded_subset_of_the_250m_label_store_and_fails_in_one_line_without_it(
    tmp_path, monkeypatch, capsys
):
    from vise_plugin.cli import run_cli, run_engine

    cfg = compose_config(["config=pretrain/vise_r50_1m_from_250m"]).config
    paper = compose_config(["config=pretrain/vise_r50_1m"]).config
    assert (cfg.data.labels, cfg.data.subset) == ("/datasets/vise/labels_250m", 1230000)
    assert cfg.optimizer == paper.optimizer and cfg.model == paper.model  # the settings of VisE-1.2M
    monkeypatch.chdir(tmp_path)
    assert run_cli(run_engine, ["config=pretrain/vise_r50_1m_from_250m"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: label store not found: /datasets/vise/labels_250m")
    assert "config.data.labels=" in lines[0] and not (tmp_path / "runs").exists()


def test_production_config_without_data_fails_fast_in_one_line(tmp_path):
    start = time.time()
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "run.py"), "config=pretrain/vise_r50_250m"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.time() - start < 60
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: label store not found: /datasets/vise/labels_250m")
    assert "config.data.labels=" in lines[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written for a run that cannot start


def test_the_demo_labels_its_default_world_in_four_shards(tmp_path):
    """The demo's label job cuts the default world's posts file into 4 shards (docs: getting started,
    "What the demo shows")."""
    from vise_plugin.demo.world import generate_posts
    from vise_plugin.labels.job.shards import plan_shards

    cfg = compose_config(["config=demo/vise_demo"]).config
    posts = generate_posts(str(tmp_path), cfg.demo.num_posts, cfg.demo.world_seed, cfg.data.image_size, images=False)
    assert len(plan_shards([posts], cfg.labels.shard_bytes)) == 4


def test_the_demo_world_without_images_has_the_same_posts(tmp_path):
    from vise_plugin.demo.world import generate_posts

    with_images = generate_posts(str(tmp_path / "a"), 30, seed=5)
    posts_only = generate_posts(str(tmp_path / "b"), 30, seed=5, images=False)
    with open(with_images, "rb") as a, open(posts_only, "rb") as b:
        assert a.read() == b.read()
    assert len(os.listdir(tmp_path / "a" / "images")) == 30 and not (tmp_path / "b" / "images").exists()
