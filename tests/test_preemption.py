"""Stopping a pretraining run anywhere and starting it again gives the weights of a run that never stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import submitit
import torch
from conftest import ROOT, torchrun_command

EPOCHS = 3
PER_EPOCH = (90 + 7) // 8
TOTAL = EPOCHS * PER_EPOCH

pytestmark = pytest.mark.faults


def _command(labels, run_dir, *extra, epochs=EPOCHS):
    return [
        sys.executable,
        os.path.join(ROOT, "tools", "run.py"),
        "config=demo/vise_tiny",
        f"config.data.labels={labels}",
        f"config.run_dir={run_dir}",
        f"config.optimizer.num_epochs={epochs}",
        *extra,
    ]


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def _last_iteration(run_dir):
    try:
        with open(os.path.join(run_dir, "stdout.json")) as f:
            lines = f.read().splitlines()
        return json.loads(lines[-1])["iteration"] if lines else 0
    except (FileNotFoundError, ValueError):
        return 0  # not started, or a line half written


def _start_and_signal(cmd, run_dir, signum, after_iteration):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.time() + 240
    while _last_iteration(run_dir) < after_iteration and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out


def _model(run_dir):
    state = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert state["position"]["iteration"] == TOTAL
    return state["model"]


def _newest_saved_iteration(run_dir):
    """The iteration of the newest checkpoint file in ``run_dir`` (every ``*.torch`` there is whole)."""
    return max(
        torch.load(os.path.join(run_dir, name), weights_only=True)["position"]["iteration"]
        for name in os.listdir(run_dir)
        if name.endswith(".torch")
    )


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory):
    """The weights of the run that never stopped (in this process: the engine function tools/run.py calls).
    ``demo/vise_tiny`` sets ``config.speed.cpu_threads=1``, so it computes with the thread count of the
    subprocess runs it is compared with, whatever the pytest process uses."""
    from vise_plugin.config import compose_config
    from vise_plugin.engine.pretrain import pretrain

    run_dir = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    pretrain(compose_config(_command(tiny_world["labels"], run_dir)[2:]))
    return _model(run_dir)


def test_sigkill_then_relaunch_ends_with_the_same_weights(tiny_world, tmp_path, reference):
    run_dir = str(tmp_path / "run")
    cmd = _command(tiny_world["labels"], run_dir, "config.checkpoint.period_iterations=5")
    code, out = _start_and_signal(cmd, run_dir, signal.SIGKILL, after_iteration=PER_EPOCH + 8)
    assert code == -signal.SIGKILL, out[-2000:]
    saved = _newest_saved_iteration(run_dir)  # a kill between a numbered file and its copy leaves that one newest
    assert 0 < saved < TOTAL
    code, out = _run(cmd)
    assert code == 0, out[-2000:]
    assert f"(iteration {saved})" in out
    _assert_same_weights(_model(run_dir), reference)
    with open(os.path.join(run_dir, "stdout.json")) as f:
        assert [json.loads(line)["iteration"] for line in f] == list(range(1, TOTAL + 1))


def test_preemption_signal_mid_epoch_with_workers_ends_with_the_same_weights(tiny_world, tmp_path, reference):
    """USR2 (SLURM's warning) mid-epoch: checkpoint after the current step, exit 3, resume exactly,
    here with two data-loading workers against a reference read in the main process."""
    run_dir = str(tmp_path / "run")
    cmd = _command(tiny_world["labels"], run_dir, "config.data.num_workers=2")
    code, out = _start_and_signal(cmd, run_dir, signal.SIGUSR2, after_iteration=PER_EPOCH + 3)
    assert code == 3, out[-2000:]
    assert "run the same command again to resume" in out
    position = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)["position"]
    assert 0 < position["iteration"] < TOTAL and position["batch_in_epoch"] > 0  # stopped inside an epoch
    code, out = _run(cmd)
    assert code == 0, out[-2000:]
    _assert_same_weights(_model(run_dir), reference)


SUBMITIT_EPOCHS = 2


def _submitit_command(labels, run_dir):
    return _command(
        labels,
        run_dir,
        "config.slurm.use_slurm=true",
        "config.slurm.cluster=local",
        "config.slurm.wait=true",
        "config.distributed.num_proc_per_node=2",
        "config.distributed.preemption_check_every=1",
        epochs=SUBMITIT_EPOCHS,
    )


def _submitit_tasks(pid):
    """Pids of the submitit task processes below ``pid`` (tools/run.py -> controller -> tasks)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                children = [int(c) for c in f.read().split()]
            with open(f"/proc/{current}/cmdline", "rb") as f:
                cmdline = f.read()
        except FileNotFoundError:
            continue
        if b"submitit.core._submit" in cmdline:
            found.append(current)
        todo += children
    return found


def test_submitit_local_executor_two_tasks_trains_checkpoints_and_survives_preemption(tiny_world, tmp_path):
    per_rank = (45 + 7) // 8  # each of the two tasks reads half of the 90 posts
    # The uninterrupted reference: the same engine on two torchrun ranks (what each submitit task runs).
    reference = str(tmp_path / "reference")
    code, out = _run(
        torchrun_command(
            *_command(
                tiny_world["labels"], reference, "config.distributed.preemption_check_every=1", epochs=SUBMITIT_EPOCHS
            )[1:]
        )
    )
    assert code == 0, out[-3000:]
    state = torch.load(os.path.join(reference, "checkpoint.torch"), weights_only=True)
    assert state["position"]["iteration"] == SUBMITIT_EPOCHS * per_rank

    # SLURM's warning (USR2 to every task): checkpoint, requeue through submitit, resume, same weights
    run_dir = str(tmp_path / "preempted")
    proc = subprocess.Popen(
        _submitit_command(tiny_world["labels"], run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # as torchrun sets it for its ranks
    deadline = time.time() + 240
    while _last_iteration(run_dir) < per_rank + 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    tasks = _submitit_tasks(proc.pid)
    assert len(tasks) == 2
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    assert "submitted pretrain job" in out
    with open(os.path.join(run_dir, "train_config.yaml")) as f:
        assert "num_proc_per_node: 2" in f.read()
    assert os.path.exists(os.path.join(run_dir, f"model_phase{SUBMITIT_EPOCHS - 1}.torch"))
    logs = "".join(
        open(os.path.join(dirpath, name)).read()
        for dirpath, _, names in os.walk(os.path.join(run_dir, "slurm"))
        for name in names
        if name.endswith((".out", ".err"))
    )
    assert "Requeued job" in logs and "resuming from" in logs
    with open(os.path.join(run_dir, "stdout.json")) as f:
        assert [json.loads(line)["iteration"] for line in f] == list(range(1, SUBMITIT_EPOCHS * per_rank + 1))
    final = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert final["position"]["iteration"] == SUBMITIT_EPOCHS * per_rank
    _assert_same_weights(final["model"], state["model"])


def test_requeue_hands_the_same_job_back_to_submitit():
    from vise_plugin.launch.submitit_launcher import EngineJob, rendezvous_port

    job = EngineJob("pretrain", {"config": {"run_dir": "x"}})
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function.engine == "pretrain" and again.function.config == job.config
    assert rendezvous_port("1234") == rendezvous_port("1234") and 20000 <= rendezvous_port("99") < 60000
