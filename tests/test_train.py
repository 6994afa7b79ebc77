import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import two_ranks
from PIL import Image

from vise_plugin.config import compose_config
from vise_plugin.engine.pretrain import pretrain

PER_EPOCH = (90 + 7) // 8  # the tiny world's label store has 90 posts; batch 8


def _cfg(labels, run_dir, *extra):
    return compose_config(
        ["config=demo/vise_tiny", f"config.data.labels={labels}", f"config.run_dir={run_dir}", *extra]
    )


def _iterations(run_dir):
    with open(os.path.join(run_dir, "stdout.json")) as f:
        return [json.loads(line)["iteration"] for line in f]


def _checkpoint(run_dir, name="checkpoint.torch"):
    return torch.load(os.path.join(run_dir, name), weights_only=True)


def test_pretrain_writes_run_folder_and_logs(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir))
    assert trainer.iteration == 2 * PER_EPOCH
    for name in (
        "train_config.yaml",
        "log.txt",
        "stdout.json",
        "checkpoint.torch",
        "model_phase0.torch",
        "model_phase1.torch",
    ):
        assert os.path.exists(os.path.join(run_dir, name)), name
    with open(os.path.join(run_dir, "stdout.json")) as f:
        first = json.loads(f.readline())
    for key in ("loss", "loss_comments", "loss_reactions", "lr", "images_per_sec", "eta_seconds", "peak_mem_mb"):
        assert key in first
    checkpoint = _checkpoint(run_dir)
    assert checkpoint["position"] == {
        "iteration": 2 * PER_EPOCH,
        "epoch": 2,
        "batch_in_epoch": 0,
        "loader_workers": 1,
        "samples_in_epoch": 0,
        "world_size": 1,
        "batch_size": 8,
    }
    assert checkpoint["bad_images"] == {"seen": 90 * 2, "skipped": 0}
    assert checkpoint["trunk"] == "tiny" and set(checkpoint["tasks"]) == {"comments", "reactions"}
    assert _checkpoint(run_dir, "model_phase0.torch")["position"]["iteration"] == PER_EPOCH
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]
    with Image.open(os.path.join(run_dir, "training_curves.png")) as picture:
        picture.load()
        assert picture.size[0] > 500 and picture.size[1] > 200
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(run_dir, "tb_logs")).Reload()
    assert {"train/loss", "train/loss_comments", "train/loss_reactions", "train/lr", "train/images_per_sec"} <= set(
        events.Tags()["scalars"]
    )
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 2 * PER_EPOCH + 1))


def test_training_curves_of_several_runs_on_one_chart(tiny_world, tiny_run, tmp_path):
    from vise_plugin.engine.training_curves import plot_training_curves
    from vise_plugin.errors import InputError

    runs = [tiny_run["run_dir"], str(tmp_path / "b")]
    pretrain(
        _cfg(
            tiny_world["labels"],
            runs[1],
            "config.optimizer.num_epochs=1",
            "config.optimizer.lr=0.01",
            "config.logging.tensorboard=false",
        )
    )
    assert not os.path.exists(os.path.join(runs[1], "tb_logs"))
    out = plot_training_curves(runs, str(tmp_path / "both.png"), ["lr 0.1", "lr 0.01"])
    with Image.open(out) as picture:
        picture.load()
        single = np.asarray(Image.open(os.path.join(runs[1], "training_curves.png")).convert("RGB"))
        assert picture.size == single.shape[1::-1] and not np.array_equal(np.asarray(picture.convert("RGB")), single)
    with pytest.raises(InputError, match="stdout.json: not found"):
        plot_training_curves([str(tmp_path)], str(tmp_path / "none.png"))


@pytest.mark.resume
def test_resume_continues_from_the_saved_iteration(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    pretrain(_cfg(tiny_world["labels"], run_dir))
    # A crash right after epoch 0: its checkpoint is the newest, and stdout.json has lines past it.
    shutil.copy(os.path.join(run_dir, "model_phase0.torch"), os.path.join(run_dir, "checkpoint.torch"))
    os.remove(os.path.join(run_dir, "model_phase1.torch"))
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir))
    assert trainer.iteration == 2 * PER_EPOCH
    assert _iterations(run_dir) == list(range(1, 2 * PER_EPOCH + 1))  # each iteration logged once
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert f"resuming from {os.path.join(run_dir, 'checkpoint.torch')} (iteration {PER_EPOCH})" in f.read()


def test_ablation_trains_only_the_chosen_head(tiny_world, tmp_path):
    trainer = pretrain(
        _cfg(
            tiny_world["labels"],
            str(tmp_path / "run"),
            "config.model.heads=[{name: vise_multi_head, tasks: [reactions]}]",
            "config.optimizer.num_epochs=1",
        )
    )
    assert set(trainer.base_model.head.tasks) == {"reactions"}


@pytest.mark.resume
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last_train_and_resume(tiny_world, tmp_path, precision):
    run_dir = str(tmp_path / precision)
    extra = [f"config.speed.precision={precision}", "config.speed.channels_last=true", "config.data.subset=24"]
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir, *extra, "config.optimizer.num_epochs=1"))
    assert torch.isfinite(trainer.last_loss)
    scaler = _checkpoint(run_dir)["grad_scaler"]
    assert (precision == "fp16") == ("scale" in scaler)
    resumed = pretrain(_cfg(tiny_world["labels"], run_dir, *extra, "config.optimizer.num_epochs=2"))
    assert resumed.iteration == 2 * 3 and torch.isfinite(resumed.last_loss)  # 24 posts, batch 8


def test_two_gloo_ranks_train_one_model_unlike_one_process_on_half_the_data(tiny_world, tmp_path):
    from poison import weights_line

    from vise_plugin.data.bad_images import collate_readable
    from vise_plugin.data.resumable_sampler import ResumableBatchSampler
    from vise_plugin.engine.pretrain import build_trainer

    run_dir = tmp_path / "ddp"
    _, rank0, rank1 = two_ranks("clean", tiny_world["labels"], run_dir)
    per_epoch = (45 + 7) // 8  # each rank reads half of the 90 posts
    assert rank0.startswith(f"finished at iteration {2 * per_epoch},") and rank1 == rank0  # one model, two replicas
    assert _iterations(str(run_dir))[-1] == 2 * per_epoch
    assert _checkpoint(str(run_dir))["position"]["iteration"] == 2 * per_epoch
    # Without DDP's gradient averaging, rank 0 would end where one process reading rank 0's half ends.
    os.makedirs(tmp_path / "half")
    half = build_trainer(_cfg(tiny_world["labels"], str(tmp_path / "half"), "config.logging.log_freq=4"))
    half.sampler = ResumableBatchSampler(90, 8, rank=0, world_size=2, seed=0)
    half.loader = torch.utils.data.DataLoader(
        half.loader.dataset, batch_sampler=half.sampler, collate_fn=collate_readable
    )
    half.train()
    assert half.iteration == 2 * per_epoch and weights_line(half) != rank0


@pytest.mark.learning
def test_classy_task_still_trains_with_classy_trainer(tiny_world):
    import copy

    from classy_vision.optim import SGD
    from classy_vision.trainer import LocalTrainer
    from torch.utils.data import default_collate

    from vise_plugin.data import VisEEngagementDataset
    from vise_plugin.losses import VisELoss
    from vise_plugin.models import VisEModel
    from vise_plugin.tasks import VisEPretrainTask

    # A strong signal, whatever the CPU's kernels: 16 posts seen 12 times, then scored on those 16 posts.
    # (Measured: the loss falls to 0.39 of its start with AVX512, AVX2 or the default kernels.)
    dataset = VisEEngagementDataset(
        tiny_world["labels"], batchsize_per_replica=16, image_size=32, crop_scale_min=0.5, subset=16
    )
    dataset.set_num_workers(0)
    tasks = {name: dataset.store.num_classes(name) for name in ("comments", "reactions")}
    torch.manual_seed(0)
    model = VisEModel.build("tiny", [{"name": "vise_multi_head", "tasks": tasks}])
    before = copy.deepcopy(model)
    fixed = default_collate([dataset.dataset[(i, i)] for i in range(16)])  # seeded crops: the same batch twice

    def fixed_batch_loss(m):
        with torch.no_grad():
            return float(VisELoss()(copy.deepcopy(m).train()(fixed["input"]), fixed["target"]))

    task = (
        VisEPretrainTask()
        .set_num_epochs(12)
        .set_dataset(dataset, "train")
        .set_model(model)
        .set_loss(VisELoss())
        .set_optimizer(SGD(lr=0.05, momentum=0.9))
        .set_meters([])
        .set_hooks([])
    )
    LocalTrainer().train(task)
    assert task.num_updates == 12 * 16  # classy counts batch sizes: 12 epochs of one batch of 16
    for name in ("trunk.0.0.0.weight", "head.fcs.comments.weight", "head.fcs.reactions.weight"):
        assert not torch.equal(model.state_dict()[name], before.state_dict()[name]), name
    assert fixed_batch_loss(model) < 0.6 * fixed_batch_loss(before)


def test_sync_bn_on_one_process_says_it_does_nothing(caplog):
    from vise_plugin.engine.model_setup import prepare_model
    from vise_plugin.models import build_trunk

    with caplog.at_level("WARNING"):
        model = prepare_model(build_trunk("tiny"), torch.device("cpu"), sync_bn=True, distributed=False)
    assert "config.speed.sync_bn=true has no effect with one process" in caplog.text
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


def test_a_training_step_makes_no_host_sync(tiny_world, tmp_path):
    """The trainer promises not to wait for the GPU except on logged iterations; on CPU the ATen calls
    that would wait are recorded instead."""
    from host_sync import HostSyncRecorder

    from vise_plugin.engine.pretrain import build_trainer

    os.makedirs(tmp_path / "run")
    trainer = build_trainer(_cfg(tiny_world["labels"], str(tmp_path / "run")))
    batch = next(iter(trainer.loader))
    batch.pop("skipped")
    placeholder = trainer.placeholder_batch()  # built on the CPU like every batch
    trainer.run_step(batch)  # the optimizer's state is created on the first step
    with HostSyncRecorder() as recorder:
        trainer.run_step(batch)
        trainer.run_step(placeholder, weight=0.0)
        trainer.placeholder_step(placeholder)
    assert recorder.calls == []


def test_checkpoints_record_what_bitwise_equal_weights_depend_on_and_deterministic_mode_trains(tiny_world, tmp_path):
    from vise_plugin.engine.determinism import device_name

    run_dir = str(tmp_path / "run")
    threads = torch.get_num_threads()
    trainer = pretrain(
        _cfg(
            tiny_world["labels"],
            run_dir,
            "config.speed.cpu_threads=3",
            "config.speed.deterministic=true",
            "config.data.subset=16",
            "config.optimizer.num_epochs=1",
            "config.logging.tensorboard=false",
        )
    )
    assert trainer.iteration == 2 and torch.isfinite(trainer.last_loss)
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads  # put back
    for name in ("checkpoint.torch", "model_phase0.torch"):
        record = _checkpoint(run_dir, name)["determinism"]
        assert record == {
            "torch": torch.__version__,
            "device": device_name(torch.device("cpu")),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": 3,
            "cudnn_deterministic": True,
            "cudnn_benchmark": False,
            "deterministic_algorithms": True,
        }
