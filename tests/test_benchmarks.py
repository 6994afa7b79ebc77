"""Every benchmark config end to end on a tiny fixture in the dataset's published layout."""

import json
import os

import benchmark_layouts as layouts
import numpy as np
import pytest

from vise_plugin.config import compose_config
from vise_plugin.evaluation import (
    FinetuneSettings,
    finetune_eval,
    read_benchmark_dataset,
    run_benchmark,
    state_fingerprint,
)
from vise_plugin.evaluation.suite import run_suite
from vise_plugin.models import build_trunk

TASKS = ("unbiased_emotion", "politics", "hateful_memes", "cub")
CHANCE = {"unbiased_emotion": 100 / 6, "politics": 50, "cub": 100 / 3}
TINY = [
    "config.model.trunk=tiny",
    "config.device=cpu",
    "config.benchmark.image_size=32",
    "config.benchmark.resize_ratio=1.0",
    "config.benchmark.num_workers=0",
    "config.benchmark.batch_size=16",
    "config.benchmark.linear.epochs=10",
    "config.benchmark.finetune.epochs=2",
    "config.benchmark.finetune.batch_size=8",
    "config.benchmark.cam.num_images=4",
]


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("benchmarks")
    return {task: getattr(layouts, task)(str(base / task)) for task in TASKS}


def _run(config, root, run_dir, *extra):
    return run_benchmark(
        compose_config(
            [
                f"config=benchmark/{config}",
                *TINY,
                f"config.benchmark.dataset.root={root}",
                f"config.run_dir={run_dir}",
                f"config.benchmark.results_table={run_dir}/table.md",
                *extra,
            ]
        )
    )


@pytest.mark.parametrize("protocol", ["linear", "finetune"])
@pytest.mark.parametrize("task", TASKS)
def test_benchmark_config_runs_end_to_end(datasets, tmp_path, task, protocol):
    run_dir = str(tmp_path / "run")
    record = _run(f"{protocol}/{task}_r50", datasets[task], run_dir)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        saved = json.loads(f.readline())
    assert saved["benchmark"] == f"{protocol}_{task}_r50" and saved["protocol"] == protocol
    assert len(saved["folds"]) == (5 if task == "unbiased_emotion" else 1)
    metrics = ("roc_auc", "acc") if task == "hateful_memes" else ("acc",)
    assert saved["metrics"] == list(metrics) and saved["report_split"] == ("dev" if task == "hateful_memes" else "test")
    summary = saved["summary"]
    if task == "hateful_memes":  # the meme text alone separates the fixture's classes
        assert summary["test_roc_auc"]["mean"] > 0.9 and summary["test_acc"]["mean"] >= 90
    elif protocol == "linear":  # each class has its own colour: a frozen random trunk's features separate them
        assert summary["test_acc"]["mean"] >= 50 + CHANCE[task] / 2, summary
    else:  # two epochs on a few images only show that the protocol runs; test_protocols_learn_... shows learning
        assert all(1 <= f["best_epoch"] <= 2 for f in saved["folds"]) and np.isfinite(summary["test_acc"]["mean"])
    with open(os.path.join(run_dir, "table.md")) as f:
        table = f.read().splitlines()
    assert table[0].startswith("| benchmark |") and table[2].startswith(f"| {protocol}_{task}_r50 | {protocol} |")
    assert os.path.getsize(os.path.join(run_dir, "cam.png")) > 1000
    assert os.path.exists(os.path.join(run_dir, "train_config.yaml")) and record["cam"]


@pytest.fixture(scope="session")
def learnable(tmp_path_factory):
    """Enough images for a few epochs of fine-tuning to settle BatchNorm's running statistics."""
    base = tmp_path_factory.mktemp("learnable")
    return {
        "image_folder": layouts.image_folder(str(base / "if"), {"train": 30, "val": 6, "test": 10}),
        "hateful_memes": layouts.hateful_memes(str(base / "hm"), train=120, dev=30),
    }


LEARN = [
    "config.benchmark.finetune.epochs=4",
    "config.benchmark.finetune.head_lr=0.1",
    "config.benchmark.finetune.trunk_lr=0.01",
    "config.benchmark.finetune.crop_scale_min=0.5",
    "config.benchmark.linear.epochs=20",
]


@pytest.mark.learning
@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_protocols_learn_from_the_image_far_above_chance(learnable, tmp_path, protocol):
    """A random-init trunk (linear: frozen; fine-tune: trained) on images whose colour is the class;
    Hateful Memes from the image features alone, without the text that separates its fixture too."""
    folder = _run(
        f"{protocol}/cub_r50",
        learnable["image_folder"],
        str(tmp_path / "if"),
        *LEARN,
        "config.benchmark.dataset.name=image_folder",
    )
    assert folder["summary"]["test_acc"]["mean"] >= 80, folder["summary"]  # 3 classes: chance is 33
    memes = _run(
        f"{protocol}/hateful_memes_r50",
        learnable["hateful_memes"],
        str(tmp_path / "hm"),
        *LEARN,
        "config.benchmark.inputs=[image]",
    )
    assert memes["inputs"] == ["image"]
    assert memes["summary"]["test_roc_auc"]["mean"] >= 0.9 and memes["summary"]["test_acc"]["mean"] >= 80, memes


def test_hateful_memes_text_alone_needs_no_trunk(learnable, tmp_path):
    memes = _run(
        "linear/hateful_memes_r50",
        learnable["hateful_memes"],
        str(tmp_path / "hm"),
        "config.benchmark.inputs=[text]",
        "config.model.trunk=no_such_trunk",
    )
    assert memes["summary"]["test_acc"]["mean"] == 100 and not os.path.exists(str(tmp_path / "hm" / "cam.png"))


def test_linear_eval_caches_features_and_leaves_the_trunk_unchanged(datasets, tmp_path):
    run_dir = str(tmp_path / "run")
    first = _run("linear/cub_r50", datasets["cub"], run_dir)
    cached = [
        os.path.join(run_dir, "features", f)
        for f in os.listdir(os.path.join(run_dir, "features"))
        if f.endswith(".npy")
    ]
    assert len(cached) == 1 and isinstance(np.load(cached[0], mmap_mode="r"), np.memmap)
    mtime = os.path.getmtime(cached[0])
    second = _run("linear/cub_r50", datasets["cub"], run_dir)
    assert os.path.getmtime(cached[0]) == mtime and second["summary"] == first["summary"]
    _run("linear/cub_r50", datasets["cub"], run_dir, "config.benchmark.layer=res4")
    assert len([f for f in os.listdir(os.path.join(run_dir, "features")) if f.endswith(".npy")]) == 2
    with open(os.path.join(run_dir, "metrics.json")) as f:
        assert len(f.readlines()) == 3


def test_bf16_extraction_and_finetuning_run_and_key_the_feature_cache(datasets, tmp_path):
    run_dir = str(tmp_path / "run")
    _run("linear/cub_r50", datasets["cub"], run_dir)
    _run("linear/cub_r50", datasets["cub"], run_dir, "config.speed.precision=bf16")
    folder = os.path.join(run_dir, "features")
    # two caches: the key holds the precision
    a, b = [np.load(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".npy")]
    assert a.shape == b.shape and not np.array_equal(a, b)  # autocast did run
    assert np.abs(a - b).mean() < 0.05 * np.abs(a).mean()
    finetuned = _run("finetune/cub_r50", datasets["cub"], str(tmp_path / "ft"), "config.speed.precision=bf16")
    assert np.isfinite(finetuned["summary"]["test_acc"]["mean"]) and finetuned["folds"][0]["best_epoch"] >= 1


def test_suite_runs_a_list_and_keeps_going_past_a_failure(datasets, tmp_path, capsys):
    out = str(tmp_path / "suite")
    # <data_root>/politics exists; <data_root>/CUB_200_2011 does not (the fixture folder is named cub)
    code = run_suite(
        [
            "benchmarks=linear/cub_r50,linear/politics_r50,finetune/politics_r50",
            f"output={out}",
            *TINY,
            f"config.benchmark.data_root={os.path.dirname(datasets['cub'])}",
        ]
    )
    with open(os.path.join(out, "results.md")) as f:
        rows = f.read().splitlines()[2:]
    assert code == 2
    assert [r.split(" | ")[0] for r in rows] == ["| linear_politics_r50", "| finetune_politics_r50"]
    assert os.path.exists(os.path.join(out, "finetune_politics_r50", "metrics.json"))
    captured = capsys.readouterr()
    assert "linear/cub_r50: error: cub dataset folder not found: " in captured.err
    assert "2/3 benchmarks done or submitted" in captured.out


def test_suite_watches_a_training_run_and_submits_each_checkpoint_through_submitit(datasets, tiny_run, tmp_path):
    run = tiny_run["run_dir"]
    out = str(tmp_path / "suite")
    args = [
        f"watch={run}",
        "benchmarks=linear/politics_r50",
        f"output={out}",
        "poll_seconds=0",
        *TINY,
        f"config.benchmark.data_root={os.path.dirname(datasets['politics'])}",
        "config.slurm.use_slurm=true",
        "config.slurm.cluster=local",
        "config.slurm.wait=true",
    ]
    assert run_suite(args) == 0
    for phase in (0, 1):
        with open(os.path.join(out, f"phase{phase}", "results.md")) as f:
            row = f.read().splitlines()[2]
        assert f"model_phase{phase}.torch" in row and row.startswith("| linear_politics_r50 |")
        assert os.path.isdir(os.path.join(out, f"phase{phase}", "linear_politics_r50", "slurm"))
    with open(os.path.join(out, "checkpoints_done.txt")) as f:
        assert f.read().split() == ["0", "1"]
    assert run_suite(args) == 0  # a restarted watch finds nothing left to do
    with open(os.path.join(out, "phase0", "results.md")) as f:
        assert len(f.read().splitlines()) == 3


@pytest.fixture(scope="session")
def nine_train_images(tmp_path_factory):
    """An ImageFolder task of 3 classes: 9 train images (one more than a batch of 8), 3 val, 3 test."""
    root = layouts.image_folder(str(tmp_path_factory.mktemp("nine") / "if"), {"train": 3, "val": 1, "test": 1})
    return read_benchmark_dataset("image_folder", root)


def _finetune(data, trunk=None, **settings):
    s = FinetuneSettings(**{"epochs": 2, "image_size": 16, "resize_ratio": 1.0, "num_workers": 0, **settings})
    return finetune_eval(trunk or build_trunk("tiny"), data, data.folds[0], s)


def test_finetune_reads_the_loss_once_per_epoch_not_once_per_step(nine_train_images):
    """The host syncs of a fine-tune epoch do not grow with its number of steps: batches of 4 images
    (2 steps) and of 8 (1 step) ask the device as often. The image transforms are left out: a real run
    makes them in the loader's worker processes, on CPU tensors."""
    from host_sync import HostSyncRecorder

    counts = []
    for batch_size in (4, 8):
        with HostSyncRecorder() as recorder:
            _finetune(nine_train_images, batch_size=batch_size, epochs=1)
        counts.append(len([c for c in recorder.calls if "/torchvision/" not in c]))
    assert counts[0] == counts[1], recorder.calls


def test_finetune_drops_a_last_training_batch_of_one_image(nine_train_images):
    """9 train images in batches of 8: the tiny trunk's last stage is 1 x 1 at 8 px, where BatchNorm in train
    mode cannot normalise a batch of one image."""
    out = _finetune(nine_train_images, batch_size=8, image_size=8)
    assert 1 <= out["best_epoch"] <= 2 and np.isfinite(out["test_acc"])
    trunk = build_trunk("tiny")
    before = state_fingerprint(trunk)
    _finetune(nine_train_images, trunk, batch_size=16, image_size=8)  # the whole split is the epoch's one batch
    assert state_fingerprint(trunk) != before


def test_benchmark_loaders_use_at_most_the_usable_cpus(monkeypatch):
    from vise_plugin.evaluation.loader_workers import loader_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 5}, raising=False)
    assert [loader_workers(n) for n in (8, 3, 2, 0)] == [3, 3, 2, 0]
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows: every CPU
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert [loader_workers(n) for n in (8, 2)] == [4, 2]


@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_every_benchmark_loader_caps_the_configured_workers_at_the_usable_cpus(
    datasets, tmp_path, monkeypatch, protocol
):
    """config.benchmark.num_workers=8 on a process allowed 2 CPUs: the screening, the feature extraction
    and every fine-tuning loader ask for 2 workers (and run without any here)."""
    import torch

    asked = []

    class CountingLoader(torch.utils.data.DataLoader):
        def __init__(self, *args, num_workers=0, **kwargs):
            asked.append(num_workers)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch.utils.data, "DataLoader", CountingLoader)
    _run(
        f"{protocol}/politics_r50",
        datasets["politics"],
        str(tmp_path / "run"),
        "config.benchmark.num_workers=8",
        "config.benchmark.finetune.epochs=1",
        "config.benchmark.cam.num_images=0",
    )
    assert len(asked) >= (2 if protocol == "linear" else 4) and set(asked) == {2}, asked


def test_suite_with_every_benchmark_failing_says_so_and_names_no_table(tmp_path, capsys):
    out = str(tmp_path / "suite")
    code = run_suite(
        [
            "benchmarks=linear/cub_r50,finetune/politics_r50",
            f"output={out}",
            *TINY,
            f"config.benchmark.data_root={tmp_path / 'no_datasets'}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2 and not os.path.exists(os.path.join(out, "results.md"))
    assert "table:" not in captured.out and "results.md" not in captured.out
    assert "every benchmark failed (0/2): linear/cub_r50, finetune/politics_r50" in captured.out
    assert "finetune/politics_r50: error: politics dataset folder not found: " in captured.err
