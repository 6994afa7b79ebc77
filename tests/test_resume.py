"""Resuming never starts over silently: unreadable checkpoints, I/O errors retried, the order of files."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from hooks import finishes_within
from iopath.common.file_io import NativePathHandler, g_pathmgr

from vise_plugin.config import compose_config
from vise_plugin.engine.checkpoint import Checkpointer
from vise_plugin.engine.pretrain import pretrain

pytestmark = pytest.mark.faults
PER_EPOCH = (90 + 7) // 8


def _cfg(labels, run_dir, *extra):
    return compose_config(
        [
            "config=demo/vise_tiny",
            f"config.data.labels={labels}",
            f"config.run_dir={run_dir}",
            "config.checkpoint.read_retry_delay_s=0.01",
            *extra,
        ]
    )


def _contents(run_dir):
    return {n: open(os.path.join(run_dir, n), "rb").read() for n in sorted(os.listdir(run_dir)) if n.endswith(".torch")}


def test_all_checkpoints_unreadable_stops_in_one_line_and_resume_false_starts_over(tiny_world, tiny_run, tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    for name in ("checkpoint.torch", "model_phase0.torch", "model_phase1.torch"):  # a finished run's files, cut short
        with open(os.path.join(tiny_run["run_dir"], name), "rb") as src, open(os.path.join(run_dir, name), "wb") as dst:
            dst.write(src.read(100))
    damaged = _contents(run_dir)
    args = [
        sys.executable,
        os.path.join(ROOT, "tools", "run.py"),
        "config=demo/vise_tiny",
        f"config.data.labels={tiny_world['labels']}",
        f"config.run_dir={run_dir}",
        "config.checkpoint.read_retry_delay_s=0.01",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"error: {run_dir}: none of its checkpoint files loads (checkpoint.torch, "
        "model_phase1.torch, model_phase0.torch; first: "
    )
    assert lines[0].endswith("start over with config.resume=false")
    assert _contents(run_dir) == damaged  # nothing overwritten, nothing moved
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir, "config.resume=false"))
    assert trainer.iteration == 2 * PER_EPOCH
    aside = [n for n in os.listdir(run_dir) if n.startswith("set_aside_")]
    assert len(aside) == 1 and _contents(os.path.join(run_dir, aside[0])) == damaged


def test_a_fallback_past_a_damaged_file_moves_it_aside_instead_of_overwriting_it(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    pretrain(_cfg(tiny_world["labels"], run_dir, "config.optimizer.num_epochs=1"))
    with open(os.path.join(run_dir, "checkpoint.torch"), "wb") as f:
        f.write(b"truncated")
    trainer = pretrain(_cfg(tiny_world["labels"], run_dir))
    assert trainer.iteration == 2 * PER_EPOCH
    with open(os.path.join(run_dir, "log.txt")) as f:
        log = f.read()
    assert "cannot read checkpoint" in log and f"model_phase0.torch (iteration {PER_EPOCH})" in log
    aside = [n for n in os.listdir(run_dir) if n.startswith("set_aside_")]
    assert len(aside) == 1 and _contents(os.path.join(run_dir, aside[0])) == {"checkpoint.torch": b"truncated"}


def test_an_io_error_is_retried_before_a_file_counts_as_unreadable(tiny_world, tmp_path, monkeypatch):
    import vise_plugin.models.weights as weights

    run_dir = str(tmp_path / "run")
    pretrain(_cfg(tiny_world["labels"], run_dir, "config.checkpoint.period_iterations=5"))
    real_open, failures = g_pathmgr.open, []

    def flaky_open(path, mode="r", **kwargs):  # the newest file fails twice, as on a storage hiccup
        if path.endswith("checkpoint.torch") and len(failures) < 2:
            failures.append(path)
            raise OSError(5, "Input/output error")
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(weights.g_pathmgr, "open", flaky_open)
    found = Checkpointer(run_dir, read_attempts=3, retry_delay_s=0.01).latest(PER_EPOCH)
    assert len(failures) == 2 and found[0].endswith("checkpoint.torch")
    assert found[1]["position"]["iteration"] == 2 * PER_EPOCH
    failures.clear()
    found = Checkpointer(run_dir, read_attempts=2, retry_delay_s=0.01).latest(PER_EPOCH)
    assert found[0].endswith("model_phase1.torch")  # two tries were not enough: the next newest


class _TestFs(NativePathHandler):
    """``testfs://<local path>``: a storage location that is not a local path, as S3 or Manifold are."""

    PREFIX = "testfs://"

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _get_path_with_cwd(self, path):
        return super()._get_path_with_cwd(path[len(self.PREFIX) :] if path.startswith(self.PREFIX) else path)

    def _mkdirs(self, path, **kwargs):
        os.makedirs(self._get_path_with_cwd(path), exist_ok=True)

    def _rm(self, path, **kwargs):
        os.remove(self._get_path_with_cwd(path))


@pytest.fixture(scope="module")
def testfs():
    if _TestFs.PREFIX not in g_pathmgr._path_handlers:
        g_pathmgr.register_handler(_TestFs())
    return _TestFs.PREFIX


@pytest.mark.parametrize("remote", [False, True])
def test_newest_checkpoint_is_chosen_by_the_number_in_its_name_on_any_storage(tmp_path, testfs, remote):
    run_dir = (testfs if remote else "") + str(tmp_path / "run")
    checkpointer = Checkpointer(run_dir)
    for name, iteration in [
        ("model_phase10.torch", 110),
        ("model_phase9.torch", 100),
        ("model_iteration105.torch", 105),
        ("model_phase2.torch", 30),
    ]:
        checkpointer.save({"kind": "vise_pretraining", "position": {"iteration": iteration}}, name)
    os.remove(str(tmp_path / "run" / "checkpoint.torch"))
    os.utime(str(tmp_path / "run" / "model_phase10.torch"), (1, 1))  # oldest by time, newest by name
    assert [os.path.basename(p) for p in checkpointer.existing(10)] == [
        "model_phase10.torch",
        "model_iteration105.torch",
        "model_phase9.torch",
        "model_phase2.torch",
    ]
    path, state = checkpointer.latest(10)
    assert path == f"{run_dir}/model_phase10.torch" and state["position"]["iteration"] == 110


def test_a_numbered_checkpoint_newer_than_checkpoint_torch_wins(tmp_path):
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save({"kind": "vise_pretraining", "position": {"iteration": 10}}, "model_iteration10.torch")
    # killed after writing model_iteration20.torch, before copying it to checkpoint.torch
    checkpointer.save({"kind": "vise_pretraining", "position": {"iteration": 20}}, "model_iteration20.torch")
    checkpointer.save({"kind": "vise_pretraining", "position": {"iteration": 10}})
    assert checkpointer.latest(5)[1]["position"]["iteration"] == 20


def test_an_empty_run_folder_starts_from_the_beginning(tmp_path):
    assert Checkpointer(str(tmp_path / "new")).latest(5) is None


def test_a_resume_past_the_end_of_an_epoch_goes_on_with_the_next_epoch(tiny_world, tmp_path):
    """E.g. the batch size grew since the checkpoint: its batch in the epoch no longer exists."""
    from vise_plugin.engine.pretrain import build_trainer

    trainer = build_trainer(_cfg(tiny_world["labels"], str(tmp_path / "run")))
    trainer.batch_in_epoch = 3 * trainer.iterations_per_epoch
    with finishes_within(120, "the trainer did not move past the missing batches"):
        trainer.train()
    assert (trainer.epoch, trainer.iteration) == (2, trainer.iterations_per_epoch)  # epoch 1 only


def test_a_resume_under_other_settings_says_once_that_the_weights_agree_within_float_tolerance(tiny_world, tmp_path):
    run_dir = str(tmp_path / "run")
    warning = (
        "resuming under other settings than the checkpoint's (threads 2 -> 1): the run goes on exactly where it "
        "stopped, but its weights will agree with an uninterrupted run within float tolerance, not bit for bit"
    )

    def run(epochs, threads):
        trainer = pretrain(
            _cfg(
                tiny_world["labels"],
                run_dir,
                "config.data.subset=16",
                "config.logging.tensorboard=false",
                f"config.optimizer.num_epochs={epochs}",
                f"config.speed.cpu_threads={threads}",
            )
        )
        assert trainer.iteration == 2 * epochs
        with open(os.path.join(run_dir, "log.txt")) as f:
            log = f.read()
        return log.count("resuming under other settings"), log.count(warning)

    run(1, 1)
    path = os.path.join(run_dir, "checkpoint.torch")
    older = torch.load(path, weights_only=True)  # as an older version wrote it
    del older["determinism"]
    older["position"] = {k: older["position"][k] for k in ("iteration", "epoch", "batch_in_epoch")}
    torch.save(older, path)
    assert run(2, 2) == (0, 0)  # no record: resumed silently
    assert run(3, 1) == (1, 1)  # threads 2 -> 1: said once
    assert run(4, 1) == (1, 1)  # the same settings: nothing more said
