import json
import os
import shutil
import socket
import subprocess
import sys

import torch

from conftest import ROOT
from vise_plugin.config import compose_config
from vise_plugin.engine.pretrain import pretrain


def _cfg(labels, run_dir, *extra):
    return compose_config(["config=demo/vise_tiny", f"config.data.labels={labels}", f"config.run_dir={run_dir}",
                           *extra])


def _iterations(run_dir):
    with open(os.path.join(run_dir, "stdout.json")) as f:
        return [json.loads(line)["iteration"] for line in f]


def test_pretrain_writes_run_folder_and_logs(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    task = pretrain(_cfg(tiny_world["labels"], run_dir))
    steps_per_epoch = (90 + 7) // 8
    assert task.num_updates // 8 == 2 * steps_per_epoch
    for name in ("train_config.yaml", "log.txt", "stdout.json", "checkpoint.torch", "model_phase0.torch",
                 "model_phase1.torch"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    with open(os.path.join(run_dir, "stdout.json")) as f:
        first = json.loads(f.readline())
    for key in ("loss", "loss_comments", "loss_reactions", "lr", "images_per_sec", "eta_seconds", "peak_mem_mb"):
        assert key in first
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert checkpoint["classy_state_dict"]["num_updates"] == task.num_updates


def test_resume_continues_from_the_saved_iteration(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    pretrain(_cfg(tiny_world["labels"], run_dir))
    per_epoch = (90 + 7) // 8
    # Simulate a crash right after epoch 0: its checkpoint is the newest, later log lines are lost.
    shutil.copy(os.path.join(run_dir, "model_phase0.torch"), os.path.join(run_dir, "checkpoint.torch"))
    with open(os.path.join(run_dir, "stdout.json")) as f:
        kept = [line for line in f if json.loads(line)["iteration"] <= per_epoch]
    with open(os.path.join(run_dir, "stdout.json"), "w") as f:
        f.writelines(kept)
    task = pretrain(_cfg(tiny_world["labels"], run_dir))
    assert task.num_updates // 8 == 2 * per_epoch
    assert _iterations(run_dir) == list(range(1, 2 * per_epoch + 1))  # no iteration done twice
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert "resuming from" in f.read()


def test_ablation_trains_only_the_chosen_head(tiny_world, tmp_path):
    task = pretrain(_cfg(tiny_world["labels"], str(tmp_path / "run"), "config.model.tasks=[reactions]",
                         "config.optimizer.num_epochs=1"))
    assert set(task.base_model.head.tasks) == {"reactions"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp(tiny_world, tmp_path):
    run_dir = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           os.path.join(ROOT, "tools", "run.py"), "config=demo/vise_tiny", f"config.data.labels={tiny_world['labels']}",
           f"config.run_dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    per_epoch = (45 + 7) // 8  # each rank reads half of the 90 posts
    assert _iterations(run_dir)[-1] == 2 * per_epoch
    state = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)["classy_state_dict"]
    assert state["num_updates"] == 2 * per_epoch * 16  # global batch of 2 x 8
