import json
import os
import shutil
import subprocess

import pytest
import torch

from conftest import ROOT, torchrun_command
from vise_plugin.config import compose_config
from vise_plugin.engine.pretrain import pretrain

PER_EPOCH = (90 + 7) // 8  # the tiny world's label store has 90 posts; batch 8


def _cfg(labels, run_dir, *extra):
    return compose_config(["config=demo/vise_tiny", f"config.data.labels={labels}", f"config.run_dir={run_dir}",
                           *extra])


def _iterations(run_dir):
    with open(os.path.join(run_dir, "stdout.json")) as f:
        return [json.loads(line)["iteration"] for line in f]


def _checkpoint(run_dir, name="checkpoint.torch"):
    return torch.load(os.path.join(run_dir, name), weights_only=True)


def test_pretrain_writes_run_folder_and_logs(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir))
    assert trainer.iteration == 2 * PER_EPOCH
    for name in ("train_config.yaml", "log.txt", "stdout.json", "checkpoint.torch", "model_phase0.torch",
                 "model_phase1.torch"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    with open(os.path.join(run_dir, "stdout.json")) as f:
        first = json.loads(f.readline())
    for key in ("loss", "loss_comments", "loss_reactions", "lr", "images_per_sec", "eta_seconds", "peak_mem_mb"):
        assert key in first
    checkpoint = _checkpoint(run_dir)
    assert checkpoint["position"] == {"iteration": 2 * PER_EPOCH, "epoch": 2, "batch_in_epoch": 0}
    assert checkpoint["trunk"] == "tiny" and set(checkpoint["tasks"]) == {"comments", "reactions"}
    assert _checkpoint(run_dir, "model_phase0.torch")["position"]["iteration"] == PER_EPOCH
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]


def test_resume_continues_from_the_saved_iteration(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    pretrain(_cfg(tiny_world["labels"], run_dir))
    # A crash right after epoch 0: its checkpoint is the newest, and stdout.json has lines past it.
    shutil.copy(os.path.join(run_dir, "model_phase0.torch"), os.path.join(run_dir, "checkpoint.torch"))
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir))
    assert trainer.iteration == 2 * PER_EPOCH
    assert _iterations(run_dir) == list(range(1, 2 * PER_EPOCH + 1))  # each iteration logged once
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert f"resuming from {os.path.join(run_dir, 'checkpoint.torch')} (iteration {PER_EPOCH})" in f.read()


@pytest.mark.faults
def test_unreadable_newest_checkpoint_falls_back_to_an_older_one(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    pretrain(_cfg(tiny_world["labels"], run_dir, "config.optimizer.num_epochs=1"))
    with open(os.path.join(run_dir, "checkpoint.torch"), "wb") as f:
        f.write(b"truncated")
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir, "config.optimizer.num_epochs=2"))
    assert trainer.iteration == 2 * PER_EPOCH
    with open(os.path.join(run_dir, "log.txt")) as f:
        log = f.read()
    assert "cannot read checkpoint" in log and f"model_phase0.torch (iteration {PER_EPOCH})" in log


def test_ablation_trains_only_the_chosen_head(tiny_world, tmp_path):
    trainer = pretrain(_cfg(tiny_world["labels"], str(tmp_path / "run"), "config.model.tasks=[reactions]",
                            "config.optimizer.num_epochs=1"))
    assert set(trainer.base_model.head.tasks) == {"reactions"}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last_train_and_resume(tiny_world, tmp_path, precision):
    run_dir = str(tmp_path / precision)
    extra = [f"config.speed.precision={precision}", "config.speed.channels_last=true", "config.optimizer.num_epochs=1"]
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir, *extra))
    assert torch.isfinite(trainer.last_loss)
    scaler = _checkpoint(run_dir)["grad_scaler"]
    assert (precision == "fp16") == ("scale" in scaler)
    resumed = pretrain(_cfg(tiny_world["labels"], run_dir, *extra[:2], "config.optimizer.num_epochs=2"))
    assert resumed.iteration == 2 * PER_EPOCH


def test_two_process_gloo_ddp(tiny_world, tmp_path):
    run_dir = str(tmp_path / "ddp")
    cmd = torchrun_command(os.path.join(ROOT, "tools", "run.py"), "config=demo/vise_tiny",
                           f"config.data.labels={tiny_world['labels']}", f"config.run_dir={run_dir}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    per_epoch = (45 + 7) // 8  # each rank reads half of the 90 posts
    assert _iterations(run_dir)[-1] == 2 * per_epoch
    assert _checkpoint(run_dir)["position"]["iteration"] == 2 * per_epoch


def test_classy_task_still_trains_with_classy_trainer(tiny_world):
    from classy_vision.optim import SGD
    from classy_vision.trainer import LocalTrainer

    from vise_plugin.data import VisEEngagementDataset
    from vise_plugin.losses import VisELoss
    from vise_plugin.models import VisEModel
    from vise_plugin.tasks import VisEPretrainTask

    dataset = VisEEngagementDataset(tiny_world["labels"], batchsize_per_replica=16, image_size=32)
    dataset.set_num_workers(0)
    tasks = {name: dataset.store.num_classes(name) for name in ("comments", "reactions")}
    task = (VisEPretrainTask().set_num_epochs(1).set_dataset(dataset, "train")
            .set_model(VisEModel.build("tiny", tasks)).set_loss(VisELoss())
            .set_optimizer(SGD(lr=0.01)).set_meters([]).set_hooks([]))
    LocalTrainer().train(task)
    assert task.num_updates == 6 * 16  # classy counts images: 6 steps of 16
