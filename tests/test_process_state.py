"""Every public entry point leaves its caller's process as it found it: threads, random generators,
kernel flags, warnings filters, log handlers, working directory, environment and signal handlers."""

import logging
import os
import random
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import ROOT

from vise_plugin.process_state import ProcessState, kept_process_state


@pytest.fixture
def unusual_state(tmp_path):
    """A caller's state no entry point would set by itself: 3 threads, seeded generators, one extra
    warnings filter and a log file of its own (opened with mode "w", which a closed handler never
    reopens); put back after the test whatever happens. Yields a function that logs a line to that file
    and returns the file's text."""
    with kept_process_state():
        torch.set_num_threads(3)
        torch.manual_seed(1234)
        random.seed(1234)
        np.random.seed(1234)
        warnings.filterwarnings("ignore", message="a caller's own filter")
        path = tmp_path / "callers.log"
        handler = logging.FileHandler(path, mode="w")
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)

        def log_and_read(line):
            logging.getLogger("caller").info(line)
            handler.flush()
            return path.read_text()

        yield log_and_read
        logging.getLogger().removeHandler(handler)
        handler.close()


def _entry_points(world, run_dir, tmp):
    """``name -> (function, argv)``: the command-line entries as the console scripts call them."""
    from vise_plugin import cli
    from vise_plugin.demo import generate_downstream

    downstream = generate_downstream(os.path.join(tmp, "downstream"), {"train": 4, "val": 2, "test": 2}, seed=0)
    labels, checkpoint = world["labels"], os.path.join(run_dir, "checkpoint.torch")
    tiny = ["config=demo/vise_tiny", f"config.data.labels={labels}"]
    bench = [
        "config.model.trunk=tiny",
        f"config.model.weights={checkpoint}",
        "config.benchmark.num_workers=0",
        "config.benchmark.linear.epochs=2",
        "config.benchmark.cam.num_images=2",
        f"config.benchmark.dataset.root={downstream}",
        f"config.benchmark.results_table={tmp}/table.md",
    ]
    return {
        "vise-labels": (
            cli.main_generate_labels,
            [
                "config=demo/vise_tiny",
                f"config.data.posts={world['posts']}",
                f"config.data.labels={tmp}/store",
                "config.labels.comments.k=5",
                "config.labels.reactions.k=3",
                "config.labels.fit_fraction=0.3",
                "config.labels.num_workers=1",
            ],
        ),
        "vise-run pretrain": (
            cli.main_run,
            [
                *tiny,
                f"config.run_dir={tmp}/pretrain",
                "config.optimizer.num_epochs=1",
                "config.data.subset=24",
                "config.speed.deterministic=true",
            ],
        ),
        "vise-run benchmark": (
            cli.main_run,
            ["config=benchmark/linear/demo_emotion", *bench, f"config.run_dir={tmp}/bench"],
        ),
        "vise-shards": (
            cli.main_write_shards,
            [*tiny, f"config.shards.output={tmp}/shards", "config.shards.num_workers=1"],
        ),
        "vise-extract": (
            cli.main_extract_features,
            [
                "config=benchmark/extract_r50",
                "config.model.trunk=tiny",
                f"config.model.weights={checkpoint}",
                f"config.extract.images={downstream}/test",
                f"config.extract.output={tmp}/feats",
                "config.benchmark.image_size=32",
                "config.benchmark.num_workers=0",
            ],
        ),
        "vise-suite": (cli.main_benchmark_suite, ["benchmarks=linear/demo_emotion", f"output={tmp}/suite", *bench]),
        "vise-export-hub": (cli.main_export_hub, [checkpoint, f"{tmp}/hub.pth", "--trunk", "tiny"]),
        "vise-curves": (cli.main_plot_curves, [run_dir, "--output", f"{tmp}/curves.png"]),
    }


def _library_calls(entries, downstream_root):
    """``name -> call``: the functions behind the command-line entries, called from Python as a notebook would."""
    from vise_plugin.config import compose_config
    from vise_plugin.data.shard_writer import run_shard_job
    from vise_plugin.engine.training_curves import plot_training_curves
    from vise_plugin.evaluation.extract import extract_job
    from vise_plugin.evaluation.runner import run_benchmark
    from vise_plugin.labels.job.pipeline import run_label_job
    from vise_plugin.models import export_hub_weights

    def again(argv, rename):  # the same arguments, into other folders
        return [a.replace("/store", "/store2").replace(rename, rename + "2") for a in argv]

    def composed(name, rename):
        return compose_config(again(entries[name][1], rename))

    from vise_plugin.engine.pretrain import build_trainer
    from vise_plugin.evaluation import FinetuneSettings, finetune_eval, linear_eval
    from vise_plugin.evaluation.datasets import read_image_folder
    from vise_plugin.models import build_trunk

    hub, curves = entries["vise-export-hub"][1], entries["vise-curves"][1]
    downstream = read_image_folder(downstream_root)
    features = np.random.default_rng(0).normal(size=(len(downstream.paths), 4)).astype(np.float32)
    trunk = build_trunk("tiny")  # its random init is the caller's draw, not the entry point's
    return {
        "build_trainer": lambda: build_trainer(composed("vise-run pretrain", "/pretrain")),
        "linear_eval": lambda: linear_eval(
            features, downstream.targets, downstream.folds[0], lrs=[0.1], weight_decays=[0.0], epochs=2, batch_size=4
        ),
        "finetune_eval": lambda: finetune_eval(
            trunk,
            downstream,
            downstream.folds[0],
            FinetuneSettings(epochs=1, image_size=16, resize_ratio=1.0, num_workers=0),
        ),
        "run_label_job": lambda: run_label_job(composed("vise-labels", "/store").config),
        "pretrain": lambda: __import__("vise_plugin.engine.pretrain", fromlist=["pretrain"]).pretrain(
            composed("vise-run pretrain", "/pretrain")
        ),
        "run_benchmark": lambda: run_benchmark(composed("vise-run benchmark", "/bench")),
        "run_shard_job": lambda: run_shard_job(composed("vise-shards", "/shards").config),
        "extract_job": lambda: extract_job(composed("vise-extract", "/feats")),
        "export_hub_weights": lambda: export_hub_weights(hub[0], hub[1] + "2", "tiny"),
        "plot_training_curves": lambda: plot_training_curves([curves[0]], curves[2] + "2.png"),
    }


def test_every_entry_point_leaves_the_callers_process_as_it_found_it(
    tiny_world, tiny_run, tmp_path, unusual_state, capsys
):
    cwd = os.getcwd()
    entries = _entry_points(tiny_world, tiny_run["run_dir"], str(tmp_path))
    calls = {name: (lambda f=function, a=argv: f(a)) for name, (function, argv) in entries.items()}
    for name, call in {**calls, **_library_calls(entries, str(tmp_path / "downstream"))}.items():
        before = ProcessState.capture()
        result = call()
        after = ProcessState.capture()
        assert name not in calls or result == 0, (name, capsys.readouterr().err[-2000:])
        assert before.differences(after) == [], name
        assert os.getcwd() == cwd
        assert unusual_state(f"the caller logs after {name}").endswith(f"the caller logs after {name}\n"), name


def test_a_run_that_fails_also_leaves_the_process_as_it_found_it(tiny_world, tmp_path, unusual_state):
    from vise_plugin.config import compose_config
    from vise_plugin.engine.pretrain import pretrain
    from vise_plugin.errors import ConfigError

    before = ProcessState.capture()
    with pytest.raises(ConfigError):  # fails after logging and threads are set up: the heads are unknown
        pretrain(
            compose_config(
                [
                    "config=demo/vise_tiny",
                    f"config.data.labels={tiny_world['labels']}",
                    f"config.run_dir={tmp_path}",
                    "config.model.heads=[no_such_head]",
                ]
            )
        )
    assert before.differences(ProcessState.capture()) == []


def test_importing_the_package_adds_no_warnings_filter_and_shows_no_warning():
    """Its dependencies install their own filters; the package adds none and prints none of theirs."""
    code = (
        "import warnings, torch, torchvision, numpy, sklearn, scipy, PIL, omegaconf, hydra, fvcore, iopath\n"
        "before = list(warnings.filters)\n"
        "import vise_plugin\n"
        "added = [f for f in warnings.filters if f not in before]\n"
        "assert not added, added\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]


def test_the_snapshot_sees_each_setting_change():
    """The check above can fail: each setting, changed, is reported by name."""
    with kept_process_state():
        before = ProcessState.capture()
        torch.set_num_threads(torch.get_num_threads() + 1)
        torch.manual_seed(7)
        np.random.seed(7)
        random.seed(7)
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        warnings.filterwarnings("ignore", message="x")
        logging.getLogger().addHandler(logging.NullHandler())
        os.environ["VISE_PROCESS_STATE_TEST"] = "1"
        torch.set_default_dtype(torch.float64)
        logging.getLogger().setLevel(logging.getLogger().level + 1)
        os.chdir(os.path.dirname(os.getcwd()))
        signal.signal(signal.SIGUSR1, lambda *_: None)
        assert sorted(before.differences(ProcessState.capture())) == sorted(
            [
                "threads",
                "torch_rng",
                "numpy_rng",
                "python_rng",
                "backend.cudnn.benchmark",
                "warning_filters",
                "root_handlers",
                "environ",
                "backend.default_dtype",
                "root_level",
                "cwd",
                "signal_handlers",
            ]
        )
    assert "VISE_PROCESS_STATE_TEST" not in os.environ and torch.get_default_dtype() == torch.float32
