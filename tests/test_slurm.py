"""On a real SLURM cluster (two nodes; `.ci/slurm-up` starts one on this host): pretraining on two nodes,
preemption and requeue, the time limit, a killed job, the label job's array and the benchmark suite,
each submitted as a user submits it. Skipped, with the reason, when ``sinfo`` reaches no cluster."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import benchmark_layouts as layouts
import pytest
import torch
from conftest import ROOT, tiny_generator, torchrun_command
from recorded_reads import epochs_read

from vise_plugin.labels import LabelStore


def _cluster_missing():
    """Why the tests cannot run here (None when a cluster of at least two usable nodes answers)."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found); start the test cluster with .ci/slurm-up (as root)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s; start the test cluster with .ci/slurm-up (as root)"
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return f"no SLURM cluster reachable (sinfo: {reason}); start the test cluster with .ci/slurm-up (as root)"
    usable = {
        line.split("|")[0]
        for line in proc.stdout.splitlines()
        if line.count("|") == 1 and line.split("|")[1].rstrip("*~#") in ("idle", "mix", "alloc", "comp")
    }
    if len(usable) < 2:
        return f"the SLURM cluster has {len(usable)} usable node(s); these tests need 2"
    return None


MISSING = _cluster_missing()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

EPOCHS = 3
PER_RANK = (45 + 7) // 8  # batches per epoch of each of two ranks (90 posts, batch 8)
TOTAL = EPOCHS * PER_RANK
ON_SLURM = [
    "config.slurm.use_slurm=true",
    "config.slurm.cluster=slurm",
    "config.slurm.wait=true",
    "config.slurm.report_every_s=2",
    "config.slurm.poll_s=1",
    "config.distributed.preemption_check_every=1",
    "config.slurm.time_minutes=60",  # >= 50 min: submitit takes a USR2 for preemption, not the time limit
    "config.distributed.rendezvous_timeout_s=60",
]


def _command(world, run_dir, *extra, epochs=EPOCHS, nodes=2):
    return [
        sys.executable,
        os.path.join(ROOT, "tools", "run.py"),
        "config=demo/vise_tiny",
        f"config.data.labels={world['labels']}",
        f"config.data.image_root={world['images']}",
        f"config.run_dir={run_dir}",
        f"config.optimizer.num_epochs={epochs}",
        "config.logging.tensorboard=false",
        *ON_SLURM,
        f"config.distributed.num_nodes={nodes}",
        "config.distributed.num_proc_per_node=1",
        *extra,
    ]


class Submission:
    """``tools/run.py`` submitting a job and following it, its output read as it comes."""

    def __init__(self, cmd, env=None):
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def job_id(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = re.search(r"submitted \w+ job (\d+)", self.output)
            if found:
                return found.group(1)
            assert self.proc.poll() is None, self.output[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"no job submitted in {timeout} s:\n{self.output[-3000:]}")

    def wait(self, timeout=300):
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def _last_iteration(run_dir):
    try:
        with open(os.path.join(run_dir, "stdout.json")) as f:
            lines = f.read().splitlines()
        return int(re.search(r'"iteration": (\d+)', lines[-1]).group(1)) if lines else 0
    except (FileNotFoundError, AttributeError):
        return 0


def _wait_for_iteration(submission, run_dir, iteration, timeout=240):
    deadline = time.time() + timeout
    while _last_iteration(run_dir) < iteration:
        assert submission.proc.poll() is None and time.time() < deadline, submission.output[-3000:]
        time.sleep(0.02)


def _scancel(*args):
    subprocess.run(["scancel", *args], check=True, timeout=30)


def _kill_tasks(job):
    """SIGKILL to every task of ``job`` (as the kernel's OOM killer would send it); returns how many."""
    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        program = os.path.basename(cmdline.split(b"\0")[0])
        if f"SLURM_JOB_ID={job}".encode() in environ and b"submitit.core._submit" in cmdline and program != b"srun":
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed


def _final(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)


def _assert_same_run(run_dir, reference, iterations=TOTAL):
    state = _final(run_dir)
    assert state["position"]["iteration"] == iterations
    different = [k for k in reference["model"] if not torch.equal(state["model"][k], reference["model"][k])]
    assert state["model"].keys() == reference["model"].keys() and not different, different[:5]
    assert state["bad_images"] == reference["bad_images"]  # every rank's count, across the resume
    return state


def _job_logs(run_dir):
    folder = os.path.join(run_dir, "slurm")
    return "".join(
        open(os.path.join(d, n), errors="replace").read()
        for d, _, names in os.walk(folder)
        for n in names
        if n.endswith((".out", ".err"))
    )


@pytest.fixture(scope="module")
def world(tiny_world, tmp_path_factory):
    """The tiny world with two unreadable images (one cut short, one missing)."""
    store = LabelStore(tiny_world["labels"])
    images = str(tmp_path_factory.mktemp("slurm_world") / "images")
    shutil.copytree(store.meta["image_root"], images)
    with open(os.path.join(images, store.images[3]), "r+b") as f:
        f.truncate(100)
    os.remove(os.path.join(images, store.images[11]))
    return {"labels": tiny_world["labels"], "images": images, "posts": tiny_world["posts"]}


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """The final checkpoint of two ``torchrun`` processes with the settings of the SLURM jobs."""
    run_dir = str(tmp_path_factory.mktemp("torchrun") / "run")
    cmd = _command(world, run_dir)[1:]
    cmd = [a for a in cmd if not a.startswith(("config.slurm.", "config.distributed.num_nodes"))]
    proc = subprocess.run(torchrun_command(*cmd), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    state = _final(run_dir)
    assert state["position"]["iteration"] == TOTAL and state["bad_images"]["skipped"] == 2 * EPOCHS
    return state


def test_two_nodes_end_with_the_weights_of_two_torchrun_processes(world, reference, tmp_path):
    run_dir = str(tmp_path / "run")
    submission = Submission(_command(world, run_dir))
    job = submission.job_id()
    assert submission.wait() == 0, submission.output[-3000:]
    _assert_same_run(run_dir, reference)
    nodes = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job, "-o", "NodeList,State"], capture_output=True, text=True
    ).stdout.split()
    assert nodes == ["node[1-2]|COMPLETED"]  # one task on each node
    states = re.findall(rf"pretrain job {job}: (\w+)", submission.output)
    assert states[-2:] == ["RUNNING", "COMPLETED"]
    assert re.search(rf"pretrain job {job} \| ", submission.output)  # a log line while it ran


@pytest.mark.resume
def test_preemption_mid_epoch_requeues_and_resumes_to_the_same_weights(world, reference, tmp_path):
    run_dir = str(tmp_path / "run")
    submission = Submission(_command(world, run_dir))
    job = submission.job_id()
    _wait_for_iteration(submission, run_dir, PER_RANK + 2)
    _scancel("--signal=USR2", job)  # what SLURM sends before preempting (submitit's --signal)
    assert submission.wait() == 0, submission.output[-3000:]
    _assert_same_run(run_dir, reference)
    logs = _job_logs(run_dir)
    assert "Requeued job" in logs and re.search(r"resuming from .*\(iteration \d+\)", logs), logs[-3000:]
    states = re.findall(rf"pretrain job {job}: (\w+)", submission.output)
    assert states[0] in ("PENDING", "RUNNING") and states[-1] == "COMPLETED"
    assert states.count("RUNNING") == 2, states  # before and after the requeue
    with open(os.path.join(run_dir, "stdout.json")) as f:
        assert [int(re.search(r'"iteration": (\d+)', line).group(1)) for line in f] == list(range(1, TOTAL + 1))


def test_the_time_limit_requeues_at_most_max_num_timeout_times_then_says_how_it_ended(world, tmp_path):
    run_dir = str(tmp_path / "run")
    # slurmctld checks time limits every 30 s and sends the warning at its first check at or after
    # limit - delay - 30 s: 1 minute and 15 s put it 15-45 s into each run, once its ranks have met (an earlier
    # signal would meet submitit's handler alone, or kill a task before it has one). On the test cluster the
    # requeued run starts some 8 s after the first warning, so its own comes at the next check, about 20 s in.
    cmd = _command(
        world,
        run_dir,
        "config.slurm.time_minutes=1",
        "config.slurm.signal_delay_s=15",
        "config.slurm.max_num_timeout=1",
        "config.data.max_bad_image_fraction=0.5",
        epochs=1000,
    )  # never done within the limit
    submission = Submission(cmd)
    job = submission.job_id()
    assert submission.wait(timeout=400) == 2, submission.output[-3000:]
    error = [line for line in submission.lines if line.startswith("error: ")]
    assert len(error) == 1 and re.match(
        rf"error: pretrain job {job}: Job not requeued because: timed-out too many times. "
        r"\(config.slurm.max_num_timeout=1\); preempted at iteration \d+; .*checkpoint.torch holds the state to resume "
        r"from; submit the same command again to resume$",
        error[0],
    ), submission.output[-3000:]
    with open(os.path.join(run_dir, "slurm", job, f"{job}_submission.sh")) as f:
        script = f.read()
    assert "#SBATCH --signal=USR2@15" in script and "#SBATCH --time=1\n" in script
    logs = _job_logs(run_dir)
    assert logs.count("this job is timed-out") >= 2 and logs.count("Requeued job") == 1  # requeued once, then not
    assert _final(run_dir)["position"]["iteration"] > 0  # the last stop left a checkpoint to resume from


@pytest.mark.resume
def test_a_killed_job_is_reported_in_one_line_and_a_resubmission_resumes(world, reference, tmp_path):
    run_dir = str(tmp_path / "run")
    cmd = _command(world, run_dir, "config.checkpoint.period_iterations=3")
    submission = Submission(cmd)
    job = submission.job_id()
    _wait_for_iteration(submission, run_dir, PER_RANK + 4)
    assert _kill_tasks(job) == 2
    assert submission.wait(timeout=120) == 2, submission.output[-3000:]
    error = [line for line in submission.lines if line.startswith("error: ")]
    assert len(error) == 1 and re.match(
        rf"error: pretrain job {job} ended (FAILED|CANCELLED) without a result; "
        r"its log ends: .+; logs: ",
        error[0],
    ), submission.output[-3000:]
    saved = _final(run_dir)["position"]["iteration"]
    assert 0 < saved < TOTAL
    again = Submission(cmd)
    assert again.wait() == 0, again.output[-3000:]
    assert f"(iteration {saved})" in _job_logs(run_dir)
    _assert_same_run(run_dir, reference)


@pytest.mark.resume
def test_a_job_preempted_on_two_nodes_and_resumed_on_one_reads_every_sample_once(world, tmp_path):
    run_dir = str(tmp_path / "run")
    env = {"PYTHONPATH": os.path.join(ROOT, "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    recorded = ["config.imports=[recorded_reads]", "config.data.dataset=recorded_pretraining_images"]
    submission = Submission(_command(world, run_dir, *recorded, epochs=2), env)
    job = submission.job_id()
    _wait_for_iteration(submission, run_dir, PER_RANK + 2)
    _scancel("--signal=USR2", job)
    deadline = time.time() + 120
    while not re.search(rf"pretrain job {job}: PENDING", submission.output.split("RUNNING", 1)[-1]):
        assert time.time() < deadline and submission.proc.poll() is None, submission.output[-3000:]
        time.sleep(0.1)
    _scancel(job)  # requeued: cancel it and go on with one node instead
    assert submission.wait() == 2
    position = _final(run_dir)["position"]
    assert position["epoch"] == 1 and 0 < position["samples_in_epoch"] < 90 and position["world_size"] == 2
    one = Submission(_command(world, run_dir, *recorded, epochs=2, nodes=1), env)
    assert one.wait() == 0, one.output[-3000:]
    assert (
        f"resuming epoch 1 at sample {position['samples_in_epoch']} of 90 with 1 rank x batch 8 (saved with 2 "
        "ranks x batch 8)"
    ) in _job_logs(run_dir)
    assert sorted(epochs_read(run_dir)[1]) == list(range(90))  # the two nodes' part and the one node's part


SHARD_BYTES = 30_000  # two shards of the tiny world's posts: each array of the job has a task for each node


def test_the_label_array_over_both_nodes_reruns_a_killed_task_and_writes_the_local_store(world, tmp_path, capsys):
    out = str(tmp_path / "labels")
    slurm = {
        "use_slurm": True,
        "cluster": "slurm",
        "name": "vise_test_labels",
        "array_parallelism": 4,
        "log_folder": None,
        "poll_s": 0.5,
        "max_task_retries": 1,
    }
    killed = []

    def kill_one_running_task():
        deadline = time.time() + 240
        while not killed and time.time() < deadline:
            rows = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%A|%i|%j"], capture_output=True, text=True
            ).stdout.split("\n")
            rows = [r.split("|") for r in rows if "assigning" in r]
            if rows:
                time.sleep(1.0)  # inside the task, past python's start
                if _kill_tasks(rows[0][0]):
                    killed.append(rows[0][1])
            time.sleep(0.25)  # each squeue costs CPU the tasks' start-up needs

    killer = threading.Thread(target=kill_one_running_task, daemon=True)
    killer.start()
    pipeline = tiny_generator(out, slurm=slurm, shard_bytes=SHARD_BYTES)
    pipeline.run(world["posts"], out)
    killer.join(timeout=10)
    assert killed, "no assign task was seen running"
    printed = capsys.readouterr().out
    assert re.search(
        rf"3/3 assigning labels task \d+ \(job {killed[0]}\) ended FAILED without a result; its log ends: "
        r".*; submitted again as job \d+ \(retry 1 of 1\)",
        printed,
    ), printed[-2000:]
    state = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", killed[0], "-o", "State,NodeList"], capture_output=True, text=True
    ).stdout.split()
    assert state and state[0].split("|")[0] in ("FAILED", "CANCELLED"), state
    nodes = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", killed[0].split("_")[0], "-o", "NodeList"], capture_output=True, text=True
    ).stdout.split()
    assert {"node1", "node2"} <= set(nodes)  # the array ran on both nodes
    local = str(tmp_path / "local")
    tiny_generator(local, shard_bytes=SHARD_BYTES).run(world["posts"], local)
    assert _files(out) == _files(local)


def _files(folder):
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                found[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return found


def test_the_benchmark_suite_submits_every_benchmark_and_follows_them(tiny_run, tmp_path, capsys):
    from vise_plugin.evaluation.suite import run_suite

    data_root = str(tmp_path / "data")
    layouts.politics(os.path.join(data_root, "politics"))
    out = str(tmp_path / "suite")
    tiny = [
        "config.model.trunk=tiny",
        "config.device=cpu",
        "config.benchmark.image_size=32",
        "config.benchmark.resize_ratio=1.0",
        "config.benchmark.num_workers=0",
        "config.benchmark.batch_size=16",
        "config.benchmark.linear.epochs=2",
        "config.benchmark.finetune.epochs=1",
        "config.benchmark.finetune.batch_size=8",
        "config.benchmark.cam.num_images=0",
    ]
    code = run_suite(
        [
            "benchmarks=linear/politics_r50,finetune/politics_r50",
            f"output={out}",
            *tiny,
            f"config.benchmark.data_root={data_root}",
            f"config.model.weights={os.path.join(tiny_run['run_dir'], 'checkpoint.torch')}",
            "config.slurm.use_slurm=true",
            "config.slurm.wait=true",
            "config.slurm.poll_s=1",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    jobs = re.findall(r"submitted benchmark job (\d+)", printed)
    assert len(jobs) == 2
    for job in jobs:  # both queued before either was followed to its end
        assert printed.index(f"submitted benchmark job {jobs[1]}") < printed.index(f"benchmark job {job}: COMPLETED")
    with open(os.path.join(out, "results.md")) as f:
        rows = f.read().splitlines()[2:]
    assert sorted(r.split(" | ")[0] for r in rows) == ["| finetune_politics_r50", "| linear_politics_r50"]
    assert "2/2 benchmarks done or submitted" in printed


def test_a_request_the_partition_cannot_satisfy_fails_in_one_line_before_submission(world, tmp_path, capsys):
    from vise_plugin.cli import run_cli, run_engine

    base = _command(world, str(tmp_path / "run"))[2:]
    for override, message in [
        (
            "config.slurm.cpus_per_task=64",
            r"error: config.slurm.cpus_per_task=64 x 1 task\(s\) per node asks for 64 "
            r"CPUs, but the nodes of partition \w+ have at most \d+: set ",
        ),
        (
            "config.slurm.mem_gb=4096",
            r"error: config.slurm.mem_gb=4096 asks for 4194304 MB per node, but the nodes "
            r"of partition \w+ have at most \d+ MB",
        ),
        ("config.distributed.num_nodes=9", r"error: config.distributed.num_nodes=9, but partition \w+ has 2 node"),
        ("config.slurm.partition=nosuch", r"error: config.slurm.partition='nosuch': no such partition"),
    ]:
        assert run_cli(run_engine, [*base, override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.match(message, err[0]), err
    assert not os.path.exists(tmp_path / "run")  # nothing written, nothing queued


def test_an_sbatch_refusal_is_one_line_with_slurms_reason(world, tmp_path, capsys):
    from vise_plugin.cli import run_cli, run_engine

    base = _command(world, str(tmp_path / "run"))[2:]
    code = run_cli(run_engine, [*base, "config.slurm.constraint=a100"])  # a node feature the cluster lacks
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: SLURM refused the pretrain job: sbatch: error:"), (
        err
    )
