import os
import socket
import sys
from typing import List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import vise_plugin  # noqa: E402,F401  (registers components)
from vise_plugin.demo.world import generate_posts  # noqa: E402
from vise_plugin.labels.job import LabelPipeline, LabelSettings  # noqa: E402
from vise_plugin.launch import JobRunner  # noqa: E402


def torchrun_command(script: str, *args: str) -> List[str]:
    """``torchrun`` with two processes on this machine, on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", script, *args]


def two_ranks(mode: str, labels: str, run_dir) -> tuple:
    """Runs ``tests/poison.py <mode>`` on two gloo ranks (``mode``: ``clean``, or damaged modes joined by
    commas, run in one job); returns its output and what each rank wrote (for damaged modes, a dict
    mode -> (rank 0's, rank 1's))."""
    import subprocess

    cmd = torchrun_command(os.path.join(ROOT, "tests", "poison.py"), mode, labels, str(run_dir))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    if mode == "clean":
        return (out, *[open(os.path.join(str(run_dir), f"rank{r}.txt")).read() for r in (0, 1)])
    return out, {
        m: tuple(open(os.path.join(str(run_dir), m, f"rank{r}.txt")).read() for r in (0, 1)) for m in mode.split(",")
    }


TINY_LABELS = {
    "comments": {"k": 8, "algorithm": "minibatch", "tfidf": {"max_features": 500, "min_df": 1}},
    "reactions": {"k": 4, "algorithm": "full"},
}


def tiny_generator(
    output: str, seed: int = 0, num_workers: int = 1, slurm=None, shard_bytes: int = 12_000, **settings
) -> LabelPipeline:
    """A label pipeline for the tiny world: k = 8 / 4, a quarter held out, about 4 shards of 120 posts."""
    settings = {
        "comments": TINY_LABELS["comments"],
        "reactions": TINY_LABELS["reactions"],
        "fit_fraction": 0.25,
        "chunk_size": 16,
        **settings,
    }
    return LabelPipeline(
        LabelSettings(work_dir=output + ".work", seed=seed, **settings),
        JobRunner(num_workers, slurm, output + ".work/logs"),
        shard_bytes=shard_bytes,
        export_interop=True,
    )


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """120 synthetic posts with 32 px images and a label store of those neither held out nor empty."""
    folder = str(tmp_path_factory.mktemp("world"))
    posts = generate_posts(folder, 120, seed=0)
    labels = os.path.join(folder, "labels")
    tiny_generator(labels).run(posts, labels)
    return {"folder": folder, "posts": posts, "labels": labels}


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory):
    """One finished ``demo/vise_tiny`` pretraining run on the tiny world (2 epochs), shared read-only:
    its folder, checkpoints and trainer."""
    from vise_plugin.config import compose_config
    from vise_plugin.engine.pretrain import pretrain

    run_dir = str(tmp_path_factory.mktemp("tiny_run") / "run")
    trainer = pretrain(
        compose_config(
            ["config=demo/vise_tiny", f"config.data.labels={tiny_world['labels']}", f"config.run_dir={run_dir}"]
        )
    )
    return {"run_dir": run_dir, "trainer": trainer}


@pytest.fixture(scope="session")
def r50_checkpoint(tiny_world, tmp_path_factory):
    """A real pretraining checkpoint of ResNet-50 (two iterations on 16 posts at 32 px) and its trunk."""
    from vise_plugin.config import compose_config
    from vise_plugin.engine.pretrain import pretrain

    run_dir = str(tmp_path_factory.mktemp("r50") / "run")
    task = pretrain(
        compose_config(
            [
                "config=demo/vise_tiny",
                f"config.data.labels={tiny_world['labels']}",
                f"config.run_dir={run_dir}",
                "config.model.trunk=resnet50",
                "config.data.subset=16",
                "config.optimizer.num_epochs=1",
            ]
        )
    )
    return os.path.join(run_dir, "checkpoint.torch"), task.base_model.trunk
