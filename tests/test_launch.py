"""The launcher: a config error fails in one line before anything is written or queued, and submitit's
local executor keeps each job's files in ``<folder>/<job id>/`` as SLURM does."""

import os
import re

import pytest

from vise_plugin.cli import run_cli, run_engine
from vise_plugin.launch import JobRunner

SUBMITIT_LOCAL = ["config.slurm.use_slurm=true", "config.slurm.cluster=local"]

#: overrides a config cannot run with, and the start of the one line each gives
BAD_CONFIGS = {
    "warm-up as long as the run": (
        ["config.optimizer.num_epochs=1", "config.optimizer.warmup_epochs=1.0"],
        "error: config.optimizer.warmup_epochs=1.0 must be below num_epochs=1",
    ),
    "lr schedule": (
        ["config.optimizer.schedule=cosin"],
        "error: config.optimizer.schedule='cosin': no lr schedule is registered under this name (nearest: cosine;",
    ),
    "trunk": (["config.model.trunk=resnet5"], "error: config.model.trunk='resnet5': no trunk is registered"),
    "head": (
        ["config.model.heads=[vise_multi_head,web_tag_heads]"],
        "error: config.model.heads[1].name='web_tag_heads': no head is registered under this name (nearest: "
        "web_tag_head;",
    ),
    "no head": (["config.model.heads=[]"], "error: config.model.heads is empty"),
    "loss": (["config.loss.name=vise_los"], "error: config.loss.name='vise_los': no loss is registered"),
    "dataset": (
        ["config.data.dataset=pretraining_image"],
        "error: config.data.dataset.name='pretraining_image': no dataset is registered",
    ),
    "precision": (["config.speed.precision=fp8"], "error: config.speed.precision='fp8': use one of"),
    "device": (["config.device=gpu"], "error: config.device='gpu': use auto, cpu or cuda"),
}


def _tiny(labels: str, run_dir: str, *overrides: str) -> list:
    return ["config=demo/vise_tiny", f"config.data.labels={labels}", f"config.run_dir={run_dir}", *overrides]


def _error_lines(argv, capsys) -> tuple:
    code = run_cli(run_engine, argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("what", list(BAD_CONFIGS))
def test_a_config_error_fails_in_one_line_before_submission_and_writes_nothing(what, tiny_world, tmp_path, capsys):
    overrides, message = BAD_CONFIGS[what]
    run_dir = tmp_path / "run"
    submitted = _error_lines(_tiny(tiny_world["labels"], str(run_dir), *overrides, *SUBMITIT_LOCAL), capsys)
    assert submitted[0] == 2 and len(submitted[1]) == 1 and submitted[1][0].startswith(message), submitted
    assert not run_dir.exists()  # neither the run folder nor <run_dir>/slurm/
    plain = _error_lines(_tiny(tiny_world["labels"], str(run_dir), *overrides), capsys)
    assert plain == submitted  # a plain run says the same, also before writing anything
    assert not run_dir.exists()


BAD_BENCHMARKS = {
    "dataset folder": ([], "error: image_folder dataset folder not found: "),
    "dataset name": (
        ["config.benchmark.dataset.name=image_foldr"],
        "error: config.benchmark.dataset.name='image_foldr': no benchmark dataset is registered",
    ),
    "protocol": (
        ["config.benchmark.protocol=linaer"],
        "error: config.benchmark.protocol='linaer': no evaluation protocol is registered",
    ),
    "trunk": (["config.model.trunk=resnet5"], "error: config.model.trunk='resnet5': no trunk is registered"),
}


@pytest.mark.parametrize("what", list(BAD_BENCHMARKS))
def test_a_benchmark_config_error_fails_in_one_line_before_submission_and_writes_nothing(what, tmp_path, capsys):
    overrides, message = BAD_BENCHMARKS[what]
    run_dir = tmp_path / "run"
    argv = [
        "config=benchmark/linear/cub_r50",
        "config.benchmark.dataset.name=image_folder",
        f"config.benchmark.dataset.root={tmp_path / 'no_such_folder'}",
        f"config.run_dir={run_dir}",
        *overrides,
    ]
    if what != "dataset folder":
        os.makedirs(tmp_path / "no_such_folder")
    submitted = _error_lines([*argv, *SUBMITIT_LOCAL], capsys)
    assert submitted[0] == 2 and len(submitted[1]) == 1 and submitted[1][0].startswith(message), submitted
    assert not run_dir.exists()
    assert _error_lines(argv, capsys) == submitted and not run_dir.exists()


def _paths_below(folder: str) -> list:
    return [os.path.relpath(os.path.join(d, n), folder) for d, dirs, files in os.walk(folder) for n in dirs + files]


def test_local_executor_keeps_an_engine_jobs_files_in_its_job_id_folder(tiny_world, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    argv = _tiny(
        tiny_world["labels"],
        run_dir,
        "config.optimizer.num_epochs=1",
        "config.data.subset=16",
        "config.slurm.wait=true",
        *SUBMITIT_LOCAL,
    )
    assert run_cli(run_engine, argv) == 0, capsys.readouterr().err[-2000:]
    job_id = re.search(r"submitted pretrain job (\d+) ", capsys.readouterr().out).group(1)
    assert [p for p in _paths_below(run_dir) if "%j" in p] == []
    assert os.listdir(os.path.join(run_dir, "slurm")) == [job_id]
    assert os.path.exists(os.path.join(run_dir, "slurm", job_id, f"{job_id}_0_log.out"))
    assert os.path.exists(os.path.join(run_dir, "model_phase0.torch"))


def test_local_executor_keeps_the_label_jobs_array_files_in_job_id_folders(tmp_path):
    """The label job's launcher (config.labels with config.slurm), here with a plain function for jobs."""
    logs = str(tmp_path / "labels.work" / "logs")
    slurm = {
        "use_slurm": True,
        "cluster": "local",
        "name": "vise_test",
        "time_minutes": 10,
        "mem_gb": 2,
        "cpus_per_task": 1,
        "array_parallelism": 2,
        "log_folder": None,
    }
    with JobRunner(1, slurm, logs) as runner:
        assert runner.map(len, [("ab",), ("abc",)], "lengths", unit="job") == [2, 3]
    assert [p for p in _paths_below(logs) if "%j" in p] == []
    job_ids = os.listdir(logs)
    assert len(job_ids) == 2 and all(name.isdigit() for name in job_ids)
    for job_id in job_ids:
        assert os.path.exists(os.path.join(logs, job_id, f"{job_id}_0_log.out"))


SINFO = "debug*|2|2|4000|infinite\nbig|4|64|512000|2-00:00:00\nbig|2|128|1024000|2-00:00:00\n"


def test_a_request_follows_the_partition_where_left_null_and_fits_it_or_names_the_key():
    from vise_plugin.errors import ConfigError
    from vise_plugin.launch.slurm_request import fit_request, parse_sinfo, parse_time_limit

    debug, big = parse_sinfo(SINFO, None), parse_sinfo(SINFO, "big")
    assert (debug.name, debug.max_cpus, debug.max_mem_mb, debug.time_limit_min) == ("debug", 2, 4000, None)
    assert (big.max_cpus, big.nodes_with(100, 0), big.time_limit_min) == (128, 2, 2880)
    assert parse_sinfo(SINFO, "gpu") is None
    assert [parse_time_limit(t) for t in ("30", "1:30:00", "2-00:00:00", "45:10", "UNLIMITED")] == [
        30,
        90,
        2880,
        46,
        None,
    ]
    null = {"cpus_per_task": None, "mem_gb": None, "timeout_min": None}
    assert fit_request({**null, "nodes": 2, "tasks_per_node": 1}, debug) == {
        "cpus_per_task": 2,
        "timeout_min": 4320,
        "nodes": 2,
        "tasks_per_node": 1,
    }  # no mem: SLURM's default
    assert fit_request({**null, "tasks_per_node": 8}, big)["cpus_per_task"] == 8  # at most 8 per task
    assert fit_request({**null, "tasks_per_node": 8}, big)["timeout_min"] == 2880
    assert fit_request(dict(null), None) == {"cpus_per_task": 1, "timeout_min": 4320}  # the local executor
    for params, message in [
        (
            {"cpus_per_task": 8},
            r"^config.slurm.cpus_per_task=8 x 1 task\(s\) per node asks for 8 CPUs, but the nodes "
            r"of partition debug have at most 2: set config.slurm.cpus_per_task=2 ",
        ),
        (
            {"mem_gb": 64},
            r"^config.slurm.mem_gb=64 asks for 65536 MB per node, but the nodes of partition debug have "
            r"at most 4000 MB: set config.slurm.mem_gb=3 or less",
        ),
        ({"nodes": 3}, r"^config.distributed.num_nodes=3, but partition debug has 2 node\(s\) with 2 CPUs: "),
    ]:
        with pytest.raises(ConfigError, match=message):
            fit_request({**null, **params}, debug)
    with pytest.raises(ConfigError, match=r"^config.slurm.time_minutes=4320 is over the 2880 minutes partition big "):
        fit_request({**null, "timeout_min": 4320}, big)
    with pytest.raises(
        ConfigError,
        match=r"^config.distributed.num_nodes=3, but partition big has 2 node\(s\) with "
        r"128 CPUs",
    ):
        fit_request({**null, "nodes": 3, "cpus_per_task": 128}, big)  # only the 128-CPU nodes fit


def test_the_first_nodes_address_comes_from_slurm_when_its_name_does_not_resolve(monkeypatch):
    from vise_plugin.errors import UserError
    from vise_plugin.launch import node_address

    assert node_address.master_address("localhost") == "localhost"
    monkeypatch.setattr(node_address, "slurm_node_address", {"node7": "127.0.0.1", "node8": "no-such-host.invalid"}.get)
    monkeypatch.setattr(node_address, "resolves", lambda host: host.count(".") == 3)
    assert node_address.master_address("node7") == "127.0.0.1"
    with pytest.raises(
        UserError,
        match=r"^no address for node node8 \(the job's first node\): its name does not "
        r"resolve here and `scontrol show node node8` gives NodeAddr=no-such-host",
    ):
        node_address.master_address("node8")
    with pytest.raises(UserError, match=r"gives no NodeAddr$"):
        node_address.master_address("node9")


def test_ranks_that_cannot_meet_stop_in_one_line_naming_the_address(monkeypatch):
    import socket

    import torch

    from vise_plugin.engine.distributed import init_distributed
    from vise_plugin.errors import UserError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once closed
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    with pytest.raises(
        UserError,
        match=rf"^rank 1 of 2 could not meet the other ranks at 127.0.0.1:{port} within "
        r"config.distributed.rendezvous_timeout_s=2 \(",
    ) as error:
        init_distributed(False, "gloo", timeout_s=2)
    assert "\n" not in str(error.value) and not torch.distributed.is_initialized()


def test_a_submitit_failure_is_told_by_its_exception_line():
    from submitit.core.utils import FailedJobError

    from vise_plugin.launch.job_follower import failure_line

    text = (
        "Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent call "
        'last):\n  File "x.py", line 1, in f\nValueError: bad value\n\n----------------------\nYou can check full '
        "logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n  - /logs/1_0_log.err\n  - /logs/1_0_log.out"
    )
    assert failure_line(FailedJobError(text)) == "ValueError: bad value"
