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
    "warm-up as long as the run": (["config.optimizer.num_epochs=1", "config.optimizer.warmup_epochs=1.0"],
                                   "error: config.optimizer.warmup_epochs=1.0 must be below num_epochs=1"),
    "lr schedule": (["config.optimizer.schedule=cosin"],
                    "error: config.optimizer.schedule='cosin': no lr schedule is registered under this name (nearest: "
                    "cosine;"),
    "trunk": (["config.model.trunk=resnet5"], "error: config.model.trunk='resnet5': no trunk is registered"),
    "head": (["config.model.heads=[vise_multi_head,web_tag_heads]"],
             "error: config.model.heads[1].name='web_tag_heads': no head is registered under this name (nearest: "
             "web_tag_head;"),
    "no head": (["config.model.heads=[]"], "error: config.model.heads is empty"),
    "loss": (["config.loss.name=vise_los"], "error: config.loss.name='vise_los': no loss is registered"),
    "dataset": (["config.data.dataset=pretraining_image"],
                "error: config.data.dataset.name='pretraining_image': no dataset is registered"),
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
    "dataset name": (["config.benchmark.dataset.name=image_foldr"],
                     "error: config.benchmark.dataset.name='image_foldr': no benchmark dataset is registered"),
    "protocol": (["config.benchmark.protocol=linaer"],
                 "error: config.benchmark.protocol='linaer': no evaluation protocol is registered"),
    "trunk": (["config.model.trunk=resnet5"], "error: config.model.trunk='resnet5': no trunk is registered"),
}


@pytest.mark.parametrize("what", list(BAD_BENCHMARKS))
def test_a_benchmark_config_error_fails_in_one_line_before_submission_and_writes_nothing(what, tmp_path, capsys):
    overrides, message = BAD_BENCHMARKS[what]
    run_dir = tmp_path / "run"
    argv = ["config=benchmark/linear/cub_r50", "config.benchmark.dataset.name=image_folder",
            f"config.benchmark.dataset.root={tmp_path / 'no_such_folder'}", f"config.run_dir={run_dir}", *overrides]
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
    argv = _tiny(tiny_world["labels"], run_dir, "config.optimizer.num_epochs=1", "config.data.subset=16",
                 "config.slurm.wait=true", *SUBMITIT_LOCAL)
    assert run_cli(run_engine, argv) == 0, capsys.readouterr().err[-2000:]
    job_id = re.search(r"submitted pretrain job (\d+) ", capsys.readouterr().out).group(1)
    assert [p for p in _paths_below(run_dir) if "%j" in p] == []
    assert os.listdir(os.path.join(run_dir, "slurm")) == [job_id]
    assert os.path.exists(os.path.join(run_dir, "slurm", job_id, f"{job_id}_0_log.out"))
    assert os.path.exists(os.path.join(run_dir, "model_phase0.torch"))


def test_local_executor_keeps_the_label_jobs_array_files_in_job_id_folders(tmp_path):
    """The label job's launcher (config.labels with config.slurm), here with a plain function for jobs."""
    logs = str(tmp_path / "labels.work" / "logs")
    slurm = {"use_slurm": True, "cluster": "local", "name": "vise_test", "time_minutes": 10, "mem_gb": 2,
             "cpus_per_task": 1, "array_parallelism": 2, "log_folder": None}
    with JobRunner(1, slurm, logs) as runner:
        assert runner.map(len, [("ab",), ("abc",)], "lengths", unit="job") == [2, 3]
    assert [p for p in _paths_below(logs) if "%j" in p] == []
    job_ids = os.listdir(logs)
    assert len(job_ids) == 2 and all(name.isdigit() for name in job_ids)
    for job_id in job_ids:
        assert os.path.exists(os.path.join(logs, job_id, f"{job_id}_0_log.out"))
