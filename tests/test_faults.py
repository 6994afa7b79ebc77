"""Fault injection: corrupt and missing images, a NaN loss, a kill while a checkpoint is written, bad configs."""

import json
import os
import shutil

import benchmark_layouts as layouts
import numpy as np
import pytest
import torch
from conftest import two_ranks
from hooks import StopAfter, bad_images
from poison import PoisonHead

from vise_plugin.config import compose_config
from vise_plugin.engine.pretrain import build_trainer, pretrain
from vise_plugin.errors import InputError, NonFiniteLossError
from vise_plugin.evaluation import run_benchmark
from vise_plugin.labels import LabelStore

pytestmark = pytest.mark.faults


def _world_copy(tiny_world, tmp_path):
    """The tiny world's images in a folder of the test's own, to damage."""
    store = LabelStore(tiny_world["labels"])
    root = str(tmp_path / "images_root")
    shutil.copytree(store.meta["image_root"], root)
    return store, root


def _damage(root, store, rows, how):
    for row in rows:
        path = os.path.join(root, store.images[row])
        if how == "missing":
            os.remove(path)
        else:
            with open(path, "r+b") as f:
                data = f.read()
                f.seek(0)
                f.truncate()
                f.write(data[: len(data) // 3])  # a JPEG cut short


def _cfg(tiny_world, run_dir, *extra):
    return compose_config(
        ["config=demo/vise_tiny", f"config.data.labels={tiny_world['labels']}", f"config.run_dir={run_dir}", *extra]
    )


def test_corrupt_and_missing_images_are_skipped_counted_and_logged(tiny_world, tmp_path):
    store, root = _world_copy(tiny_world, tmp_path)
    _damage(root, store, [3], "truncate")
    _damage(root, store, [7], "missing")
    run_dir = str(tmp_path / "run")
    trainer = pretrain(_cfg(tiny_world, run_dir, f"config.data.image_root={root}"))
    assert trainer.iteration == 2 * ((90 + 7) // 8)
    assert bad_images(trainer).skipped == 4 and bad_images(trainer).seen == 180  # 2 images x 2 epochs
    with open(os.path.join(run_dir, "log.txt")) as f:
        log = f.read()
    assert f"skipped unreadable image {os.path.join(root, store.images[3])}" in log
    assert f"skipped unreadable image {os.path.join(root, store.images[7])}" in log


def test_too_many_unreadable_images_stop_the_run_saying_so(tiny_world, tmp_path):
    store, root = _world_copy(tiny_world, tmp_path)
    _damage(root, store, range(0, 90, 3), "missing")  # a third of the posts
    with pytest.raises(
        InputError,
        match=r"images could not be read \(3\d\.\d\d%, above the 10% allowed by "
        r"config.data.max_bad_image_fraction\)",
    ):
        pretrain(
            _cfg(
                tiny_world,
                str(tmp_path / "run"),
                f"config.data.image_root={root}",
                "config.data.max_bad_image_fraction=0.1",
            )
        )


def test_benchmark_skips_an_unreadable_image_and_fails_past_the_threshold(tmp_path):
    root = layouts.cub(str(tmp_path / "cub"))
    images = sorted(os.path.join(d, n) for d, _, names in os.walk(os.path.join(root, "images")) for n in names)
    with open(images[0], "wb") as f:
        f.write(b"\xff\xd8\xff not really a jpeg")
    base = [
        "config=benchmark/linear/cub_r50",
        "config.model.trunk=tiny",
        "config.device=cpu",
        "config.benchmark.image_size=32",
        "config.benchmark.resize_ratio=1.0",
        "config.benchmark.num_workers=0",
        "config.benchmark.linear.epochs=2",
        "config.benchmark.cam.num_images=0",
        f"config.benchmark.dataset.root={root}",
        f"config.benchmark.results_table={tmp_path}/table.md",
    ]
    record = run_benchmark(
        compose_config([*base, f"config.run_dir={tmp_path}/run", "config.data.max_bad_image_fraction=0.05"])
    )  # 1 of 30
    assert record["num_images"] == len(images) - 1
    with open(os.path.join(tmp_path, "run", "log.txt")) as f:
        assert "skipped unreadable image" in f.read()
    with pytest.raises(InputError, match=r"1 of \d+ cub images could not be read"):
        run_benchmark(
            compose_config([*base, f"config.run_dir={tmp_path}/strict", "config.data.max_bad_image_fraction=0.0"])
        )


def test_nan_loss_stops_naming_iteration_and_task_and_keeps_the_last_good_checkpoint(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    trainer = build_trainer(
        _cfg(tiny_world, run_dir, "config.checkpoint.period_iterations=3", "config.logging.log_freq=4")
    )
    trainer.hooks.insert(0, PoisonHead(at=4))
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite at iteration 5 \(comments; reactions from iteration 6\); "
        r"stopped without saving; the last good checkpoint is "
        r".*model_iteration3.torch \(iteration 3\)",
    ):
        trainer.train()
    state = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert state["position"]["iteration"] == 3  # iteration 6 would have saved damaged weights
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not os.path.exists(os.path.join(run_dir, "model_iteration6.torch"))


@pytest.fixture(scope="module")
def poisoned(tiny_world, tmp_path_factory):
    """Two gloo ranks of which rank 1 is damaged, in one torchrun job: its output and each mode's results."""
    return two_ranks("nan,unreadable,over_budget", tiny_world["labels"], tmp_path_factory.mktemp("poisoned"))


def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_iteration(poisoned):
    rank0, rank1 = poisoned[1]["nan"]
    assert rank1.startswith("the loss became non-finite at iteration 4 (comments)"), rank1
    assert rank0.startswith("the loss became non-finite at iteration 4 (on another rank)"), rank0


def test_a_rank_whose_whole_batch_is_unreadable_stays_in_step_with_the_others(poisoned):
    out, (rank0, rank1) = poisoned[0], poisoned[1]["unreadable"]  # its first batch too
    assert "skipped unreadable image unreadable.jpg (8 so far" in out
    assert rank0.startswith(f"finished at iteration {2 * ((45 + 7) // 8)},"), rank0  # 2 epochs of 6 steps
    assert rank1 == rank0  # the same iteration and the same weights: DDP kept the replicas identical


def test_too_many_unreadable_images_on_one_rank_stop_every_rank_at_the_same_step(poisoned):
    rank0, rank1 = poisoned[1]["over_budget"]
    # at iteration 10 (the ranks' agreement): 4 batches of 8 skipped on rank 1, of 2 x (45 + 4 x 8) read
    expected = "stopped at iteration 10: 32 of 154 images could not be read (20.78%, above the 10% allowed"
    assert rank0.startswith(expected) and rank1.startswith(expected), (rank0, rank1)
    assert rank1.endswith("e.g. unreadable.jpg") and rank0.endswith("the images are named in each rank's log")


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one_loadable(tiny_world, tmp_path, monkeypatch):
    import vise_plugin.io_utils as io_utils

    run_dir = str(tmp_path / "run")
    real_save = torch.save
    calls = []

    def dying_save(obj, f):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: half written, then the process "dies"
            f.write(b"\x80\x02half a checkpoint")
            raise KeyboardInterrupt
        real_save(obj, f)

    monkeypatch.setattr(io_utils.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_cfg(tiny_world, run_dir, "config.checkpoint.period_iterations=4"))
    monkeypatch.setattr(io_utils.torch, "save", real_save)
    names = sorted(n for n in os.listdir(run_dir) if n.endswith(".torch"))
    assert names == ["checkpoint.torch", "model_iteration4.torch"]  # the half-written one kept its .tmp name
    for name in names:
        assert torch.load(os.path.join(run_dir, name), weights_only=True)["position"]["iteration"] == 4
    resumed = pretrain(_cfg(tiny_world, run_dir, "config.checkpoint.period_iterations=4"))
    assert resumed.iteration == 2 * ((90 + 7) // 8)


CONFIG_ERRORS = [
    ("config.optimizer.lr=abc", "error: config.optimizer.lr='abc': expected a number, got str"),
    ("config.speed.channels_last=yes", "error: config.speed.channels_last='yes': expected true or false, got str"),
    ("config.data.num_workers=2.5", "error: config.data.num_workers=2.5: expected an integer, got float"),
    ("config.optimizer.lrr=0.1", "error: unknown key 'config.optimizer.lrr'"),
    ("config.data.labels=/nowhere", "error: label store not found: /nowhere"),
]


def _cli(capsys, *argv):
    """``tools/run.py`` in this process (the same ``run_cli(run_engine)`` call); exit code and stderr lines."""
    from vise_plugin.cli import run_cli, run_engine

    code = run_cli(run_engine, list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("override, message", CONFIG_ERRORS)  # tools/run.py itself: test_config.py
def test_config_errors_exit_2_with_one_line(capsys, override, message):
    code, lines = _cli(capsys, "config=pretrain/vise_r50_1m", override)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), lines


def test_empty_label_store_is_one_line(tmp_path, capsys):
    from vise_plugin.labels import write_label_store

    write_label_store(
        str(tmp_path / "labels"),
        [],
        [],
        [],
        np.zeros(0, np.int64),
        {"tasks": {"comments": {"k": 2}, "reactions": {"k": 2}}, "image_root": str(tmp_path)},
    )
    code, lines = _cli(
        capsys, "config=demo/vise_tiny", f"config.data.labels={tmp_path}/labels", f"config.run_dir={tmp_path}/run"
    )
    assert code == 2 and lines == [f"error: label store {tmp_path}/labels: no images to train on"]


class _Payload:
    def __reduce__(self):
        return (open, ("PAYLOAD_RAN", "w"))


def test_a_checkpoint_that_would_run_code_is_refused_on_resume(tiny_world, tmp_path, monkeypatch):
    import pickle

    from vise_plugin.engine.checkpoint import CheckpointsUnreadable

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "checkpoint.torch", "wb") as f:
        pickle.dump({"kind": "vise_pretraining", "model": _Payload()}, f, protocol=2)
    with pytest.raises(
        CheckpointsUnreadable,
        match=r"none of its checkpoint files loads \(checkpoint.torch; first: "
        r".*cannot read weights with torch.load\(weights_only=True\)",
    ):
        pretrain(_cfg(tiny_world, str(run_dir), "config.optimizer.num_epochs=1"))
    assert not (tmp_path / "PAYLOAD_RAN").exists()
    trainer = pretrain(_cfg(tiny_world, str(run_dir), "config.optimizer.num_epochs=1", "config.resume=false"))
    assert not (tmp_path / "PAYLOAD_RAN").exists()
    assert trainer.iteration == (90 + 7) // 8  # trained from the start, the refused file kept aside
    assert len(list(run_dir.glob("set_aside_*/checkpoint.torch"))) == 1


class _Snapshot(StopAfter):
    """A hook that notes the weights, BatchNorm statistics and optimizer state after ``at`` and stops the run
    (as a kill would) after ``stop``."""

    def __init__(self, at, stop):
        super().__init__(stop)
        self.at, self.state = at, None

    def after_step(self, trainer):
        if trainer.iteration == self.at:
            self.state = _training_state(trainer)
        super().after_step(trainer)


def _training_state(trainer):
    """``{name: tensor}`` copies of the weights, the BatchNorm buffers and the optimizer's state."""
    state = {f"model.{k}": v.clone() for k, v in trainer.base_model.state_dict().items()}
    for index, values in trainer.optimizer.state_dict()["state"].items():
        state.update({f"optimizer.{index}.{k}": v.clone() for k, v in values.items() if torch.is_tensor(v)})
    return state


def _changed(before, after):
    return sorted(
        k
        for k in before.keys() | after.keys()
        if k not in before or k not in after or not torch.equal(before[k], after[k])
    )


@pytest.mark.parametrize("world_size, decode_on", [(1, "loader"), (2, "loader"), (2, "device")])
def test_a_batch_with_no_readable_image_moves_no_batchnorm_statistics(tiny_world, tmp_path, world_size, decode_on):
    """The second batch is wholly unreadable. One process skips the step: nothing moves. With several ranks
    (here faked, without a process group) the rank steps with weight 0 on the placeholder batch (decoded on
    the device like the batches, when they are) to join the others' gradient all-reduce, and its black
    images leave the BatchNorm statistics as they were."""
    from poison import UnreadableBatch

    os.makedirs(tmp_path / "run")
    trainer = build_trainer(
        _cfg(tiny_world, str(tmp_path / "run"), "config.logging.log_freq=100", f"config.data.decode_on={decode_on}")
    )
    trainer.world_size = world_size
    trainer.loader = UnreadableBatch(trainer.loader, at=(1,))
    snapshot = _Snapshot(at=1, stop=2)
    trainer.hooks.insert(0, snapshot)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.iteration == 2 and bad_images(trainer).skipped == 8
    changed = _changed(snapshot.state, _training_state(trainer))
    statistics = [k for k in snapshot.state if "running_" in k or "num_batches_tracked" in k]
    assert statistics and not set(changed) & set(statistics), changed
    if world_size == 1:
        assert changed == []  # no forward, no momentum or weight decay applied to nothing
    else:  # the step ran (its weight decay and momentum moved the weights), only the statistics were put back
        assert any(k.startswith("model.") and k.endswith(".weight") for k in changed), changed


def test_a_logged_iteration_before_any_readable_batch_logs_that_instead_of_a_loss(tiny_world, tmp_path, caplog):
    """The run's first batch is wholly unreadable and its iteration is logged: there is no loss to show yet."""
    from poison import UnreadableBatch

    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    trainer = build_trainer(_cfg(tiny_world, run_dir, "config.logging.log_freq=1", "config.optimizer.num_epochs=1"))
    trainer.loader = UnreadableBatch(trainer.loader, at=(0,))
    with caplog.at_level("INFO"):
        trainer.train()
    with open(os.path.join(run_dir, "stdout.json")) as f:
        assert [json.loads(line)["iteration"] for line in f] == list(range(2, trainer.iteration + 1))
    assert f"it 1/{trainer.iteration}  no batch trained yet (8 of 8 images unreadable so far)" in caplog.text
