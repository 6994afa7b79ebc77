"""A run stopped inside an epoch and resumed with another number of ranks or another batch size reads the
rest of the epoch, each sample once, and its lr goes on from where the run stopped; the streamed reader,
which cannot, says which setting to put back."""

import collections
import logging
import os
import shutil
import subprocess

import pytest
import torch
from conftest import ROOT, torchrun_command
from hooks import StopAfter, finishes_within

from vise_plugin.config import compose_config
from vise_plugin.data.resumable_sampler import ResumableBatchSampler
from vise_plugin.engine.hooks.base import HookBase
from vise_plugin.engine.pretrain import build_trainer
from vise_plugin.errors import ConfigError

pytestmark = pytest.mark.resume


def _read(num_items, batch_size, world_size, epoch, start_sample=None, batches=None, seed=5):
    """``[(item, seed), ...]`` that ranks ``0 .. world_size - 1`` read of ``epoch``: each rank's first
    ``batches`` batches (None: all) from ``start_sample`` on (None: the epoch's start)."""
    read = []
    for rank in range(world_size):
        sampler = ResumableBatchSampler(num_items, batch_size, rank, world_size, seed=seed)
        if start_sample is None:
            sampler.set_epoch(epoch)
        else:
            sampler.set_epoch(epoch, start_sample=start_sample)
        read += [pair for batch in list(sampler)[:batches] for pair in batch]
    return read


@pytest.mark.parametrize("num_items", [90, 91])
@pytest.mark.parametrize("world_size, batch_size", [(1, 8), (3, 8), (2, 5), (3, 7)])
def test_the_rest_of_an_epoch_split_among_other_ranks_or_batches_reads_every_item_once(
    num_items, world_size, batch_size
):
    epoch, done = 1, 3
    whole = _read(num_items, 1, 1, epoch)  # the epoch's order, each item with its own seed
    order = [item for item, _ in whole]
    assert sorted(order) == list(range(num_items))
    before = _read(num_items, 8, 2, epoch, batches=done)  # 2 ranks x 3 batches of 8: the first 48 of the order
    assert sorted(item for item, _ in before) == sorted(order[:48])
    after = _read(num_items, batch_size, world_size, epoch, start_sample=48)
    padding = -(num_items - 48) % world_size  # as DistributedSampler: the new ranks' shares made equal
    counts = collections.Counter(item for item, _ in before + after)
    assert counts == collections.Counter(order) + collections.Counter(order[:padding])
    assert set(before + after) == set(whole)  # every item with its own augmentation seed
    per_rank = len(after) // world_size
    assert len(after) == per_rank * world_size
    sampler = ResumableBatchSampler(num_items, batch_size, 0, world_size, seed=5)
    assert sampler.batches_after(48) == -(-per_rank // batch_size)


def test_the_rest_of_an_epoch_with_the_same_settings_is_the_batches_the_run_would_have_read():
    for num_items in (90, 91):
        for rank in (0, 1):
            sampler = ResumableBatchSampler(num_items, 8, rank, 2, seed=5)
            sampler.set_epoch(1)
            whole = list(sampler)
            sampler.set_epoch(1, start_sample=3 * 8 * 2)
            assert list(sampler) == whole[3:]
            sampler.set_epoch(1, 3)
            assert list(sampler) == whole[3:]


PER_EPOCH = (90 + 7) // 8


def _cfg(labels, run_dir, *extra):
    return compose_config(
        [
            "config=demo/vise_tiny",
            f"config.data.labels={labels}",
            f"config.run_dir={run_dir}",
            "config.logging.tensorboard=false",
            *extra,
        ]
    )


class _Recorded(torch.utils.data.Dataset):
    """``dataset``, noting ``(epoch, item, seed)`` of every item the loader asks for."""

    def __init__(self, dataset, sampler, seen):
        self.dataset, self.sampler, self.seen = dataset, sampler, seen

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.seen.append((self.sampler.epoch, *index))
        return self.dataset[index]


def _recording(trainer, seen, sampler=None):
    """``trainer`` reading through :class:`_Recorded` (with ``sampler`` instead of its own, when given)."""
    trainer.sampler = sampler or trainer.sampler
    trainer.loader = torch.utils.data.DataLoader(
        _Recorded(trainer.loader.dataset, trainer.sampler, seen),
        batch_sampler=trainer.sampler,
        collate_fn=trainer.loader.collate_fn,
    )
    return trainer


class _Lrs(HookBase):
    """A hook noting the lr of every step."""

    def __init__(self):
        self.lrs = {}

    def after_step(self, trainer):
        self.lrs[trainer.iteration] = trainer.optimizer.param_groups[0]["lr"]


def _resume(labels, run_dir, seen, caplog, *extra):
    """A 1-rank run resumed from ``run_dir`` that records its items; returns it and its hook of lrs."""
    trainer = _recording(build_trainer(_cfg(labels, run_dir, *extra)), seen)
    lrs = _Lrs()
    trainer.hooks.append(lrs)
    with caplog.at_level(logging.INFO, logger="vise_plugin.engine"):
        assert trainer.resume_or_start()
        trainer.train()
    return trainer, lrs


@pytest.mark.parametrize("older", [False, True], ids=["checkpoint", "older_checkpoint"])
def test_a_run_resumed_inside_an_epoch_with_another_batch_size_reads_the_rest_once(tiny_world, tmp_path, caplog, older):
    """``older``: a checkpoint of an earlier version, whose position has no sample position, ranks or batch
    size; its batch size is read from its config."""
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    seen = []
    first = _recording(
        build_trainer(_cfg(tiny_world["labels"], run_dir, "config.checkpoint.period_iterations=4")), seen
    )
    first.hooks.append(StopAfter(PER_EPOCH + 4))  # epoch 1 after 4 batches of 8: 32 of its 90 samples
    with pytest.raises(KeyboardInterrupt):
        first.train()
    checkpoint = os.path.join(run_dir, "checkpoint.torch")
    state = torch.load(checkpoint, weights_only=True)
    saved = dict(state["position"])
    if older:
        state["position"] = {k: saved[k] for k in ("iteration", "epoch", "batch_in_epoch")}
        torch.save({k: v for k, v in state.items() if k != "determinism"}, checkpoint)
    resumed, lrs = _resume(tiny_world["labels"], run_dir, seen, caplog, "config.data.batch_size_per_gpu=6")
    assert resumed.iteration == PER_EPOCH + 4 + -(-(90 - 32) // 6)  # 10 batches of 6 finish epoch 1
    assert resumed.epoch == 2 and resumed.max_iterations == resumed.iteration
    read = [(item, seed) for epoch, item, seed in seen if epoch == 1]
    assert sorted(item for item, _ in read) == list(range(90))  # each sample of the epoch once
    assert len({seed - item for item, seed in read}) == 1  # with its own augmentation seed
    assert (
        "resuming epoch 1 at sample 32 of 90 with 1 rank x batch 6 (saved with 1 rank x batch 8): the rest "
        "of the epoch is split among the current ranks"
    ) in caplog.text
    # the lr is a function of the samples read: the first step after the resume is at sample 32 of epoch 1
    assert lrs.lrs[PER_EPOCH + 5] == pytest.approx(resumed.lr_schedule((1 + 32 / 90) / 2), rel=1e-12)
    assert (saved["epoch"], saved["batch_in_epoch"], saved.get("samples_in_epoch")) == (1, 4, 32)


def test_a_run_of_two_ranks_resumed_as_one_reads_the_rest_of_the_epoch_once(tiny_world, tmp_path, caplog):
    """Two ranks (each a trainer of this process with its rank's sampler) stop after 2 batches of epoch 1;
    one process goes on from the first rank's checkpoint."""
    per_rank = (45 + 7) // 8
    seen = []
    for rank in (0, 1):
        run_dir = str(tmp_path / f"rank{rank}")
        os.makedirs(run_dir)
        trainer = build_trainer(_cfg(tiny_world["labels"], run_dir, "config.checkpoint.period_iterations=4"))
        _recording(trainer, seen, ResumableBatchSampler(90, 8, rank, 2, seed=0))
        trainer.hooks.append(StopAfter(per_rank + 2))
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
    saved = torch.load(os.path.join(tmp_path, "rank0", "checkpoint.torch"), weights_only=True)["position"]
    resumed, _ = _resume(tiny_world["labels"], str(tmp_path / "rank0"), seen, caplog)
    assert resumed.iteration == per_rank + 2 + -(-(90 - 32) // 8)
    assert sorted(item for epoch, item, _ in seen if epoch == 1) == list(range(90))
    assert "resuming epoch 1 at sample 32 of 90 with 1 rank x batch 8 (saved with 2 ranks x batch 8)" in caplog.text
    assert [saved.get(k) for k in ("epoch", "samples_in_epoch", "world_size", "batch_size")] == [1, 32, 2, 8]


def test_a_checkpoint_of_two_torchrun_ranks_resumes_in_one_process_reading_the_rest_of_the_epoch_once(
    tiny_world, tmp_path, caplog
):
    per_rank = (45 + 7) // 8
    ranks = str(tmp_path / "ranks")
    cmd = torchrun_command(
        os.path.join(ROOT, "tools", "run.py"),
        "config=demo/vise_tiny",
        f"config.data.labels={tiny_world['labels']}",
        f"config.run_dir={ranks}",
        "config.checkpoint.period_iterations=4",
        "config.logging.tensorboard=false",
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run_dir = str(tmp_path / "one")
    os.makedirs(run_dir)  # the two ranks' checkpoint after 2 batches of epoch 1, as if they were stopped there
    shutil.copy(os.path.join(ranks, f"model_iteration{per_rank + 2}.torch"), os.path.join(run_dir, "checkpoint.torch"))
    seen = []
    resumed, _ = _resume(tiny_world["labels"], run_dir, seen, caplog)
    assert resumed.iteration == per_rank + 2 + -(-(90 - 32) // 8)
    read_by_ranks = [item for item, _ in _read(90, 8, 2, 1, batches=2, seed=0)]
    assert sorted(read_by_ranks + [item for epoch, item, _ in seen if epoch == 1]) == list(range(90))
    assert "resuming epoch 1 at sample 32 of 90 with 1 rank x batch 8 (saved with 2 ranks x batch 8)" in caplog.text


@pytest.fixture(scope="module")
def shards(tiny_world, tmp_path_factory):
    from vise_plugin.data.shard_writer import run_shard_job

    folder = str(tmp_path_factory.mktemp("shards") / "shards")
    run_shard_job(
        compose_config(
            [
                "config=demo/vise_tiny",
                f"config.data.labels={tiny_world['labels']}",
                f"config.shards.output={folder}",
                "config.shards.shard_bytes=20000",
                "config.shards.num_workers=1",
            ]
        ).config
    )
    return folder


@pytest.mark.parametrize(
    "key, saved, message",
    [
        (
            "batch_size",
            4,
            r"^config.data.batch_size_per_gpu: the checkpoint stopped inside a streamed epoch read in "
            r"batches of 4 per rank, .* set config.data.batch_size_per_gpu=4$",
        ),
        (
            "world_size",
            2,
            r"^config.distributed: the checkpoint stopped inside a streamed epoch read by 2 ranks, .* "
            r"run it on 2 ranks \(.*\)$",
        ),
    ],
)
def test_the_streamed_reader_resumes_inside_an_epoch_only_with_the_same_ranks_and_batch_size(
    shards, tmp_path, key, saved, message
):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    trainer = build_trainer(
        compose_config(
            [
                "config=demo/vise_tiny",
                "config.data.sources=[tar_shards]",
                f"config.data.shards={shards}",
                "config.data.dataset=streaming_shards",
                f"config.run_dir={run_dir}",
            ]
        )
    )
    state = trainer.state_dict()
    state["position"].update({"epoch": 1, "batch_in_epoch": 3, key: saved})
    with pytest.raises(ConfigError, match=message):
        trainer.load_state_dict(state)
    state["position"].update({"batch_in_epoch": 0})  # at an epoch's end any settings go on
    trainer.load_state_dict(state)
    assert (trainer.epoch, trainer.batch_in_epoch) == (1, 0)


def test_a_sample_position_past_the_end_of_the_epoch_as_it_now_is_goes_on_with_the_next_epoch(tiny_world, tmp_path):
    """E.g. the data shrank since the checkpoint: its sample position no longer exists."""
    os.makedirs(tmp_path / "run")
    trainer = build_trainer(_cfg(tiny_world["labels"], str(tmp_path / "run"), "config.optimizer.num_epochs=3"))
    state = trainer.state_dict()
    state["position"].update({"iteration": 20, "epoch": 1, "batch_in_epoch": 5, "samples_in_epoch": 200})
    trainer.load_state_dict(state)
    with finishes_within(120, "the trainer did not move past the missing samples"):
        trainer.train()
    assert (trainer.epoch, trainer.iteration) == (3, 20 + PER_EPOCH)  # epoch 2 only
