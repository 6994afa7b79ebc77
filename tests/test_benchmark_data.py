"""Benchmark dataset layouts, splits, metrics and CAM maps."""

import os
import pickle

import benchmark_layouts as layouts
import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from vise_plugin.errors import InputError
from vise_plugin.evaluation import (
    accuracy,
    mean_average_precision,
    read_benchmark_dataset,
    roc_auc,
)
from vise_plugin.evaluation.cam import class_activation_maps
from vise_plugin.evaluation.datasets import random_split


def test_unbiased_emotion_splits_are_deterministic_disjoint_and_cover_every_image(tmp_path):
    root = layouts.unbiased_emotion(str(tmp_path / "ue"), per_class=10)
    a = read_benchmark_dataset("unbiased_emotion", root)
    b = read_benchmark_dataset("unbiased_emotion", root)
    assert len(a.paths) == 60 and a.classes == ["anger", "fear", "joy", "love", "sadness", "surprise"]
    assert len(a.folds) == 5
    for fa, fb in zip(a.folds, b.folds):
        parts = [fa[s] for s in ("train", "val", "test")]
        assert all(np.array_equal(fa[s], fb[s]) for s in fa)
        assert [len(p) for p in parts] == [42, 6, 12]
        assert sorted(np.concatenate(parts)) == list(range(60))
    assert not np.array_equal(a.folds[0]["test"], a.folds[1]["test"])  # other seed, other split
    assert np.array_equal(random_split(3045, [0.7, 0.1, 0.2], 3)[2], random_split(3045, [0.7, 0.1, 0.2], 3)[2])
    assert [len(p) for p in random_split(3045, [0.7, 0.1, 0.2], 0)] == [2132, 304, 609]


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    scores2, y2 = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    scores5, y5 = rng.normal(size=(60, 5)), np.arange(60) % 5
    assert accuracy(scores5, y5) == pytest.approx(100 * accuracy_score(y5, scores5.argmax(1)))
    probs2 = np.exp(scores2) / np.exp(scores2).sum(1, keepdims=True)
    assert roc_auc(scores2, y2) == pytest.approx(roc_auc_score(y2, probs2[:, 1]))
    probs5 = np.exp(scores5) / np.exp(scores5).sum(1, keepdims=True)
    assert roc_auc(scores5, y5) == pytest.approx(roc_auc_score(y5, probs5, multi_class="ovr", average="macro"))
    multi = (rng.random((40, 4)) > 0.6).astype(np.float32)
    assert mean_average_precision(scores5[:40, :4], multi) == pytest.approx(
        100 * average_precision_score(multi, scores5[:40, :4], average="macro")
    )
    # hand-computed: positives score 0.9 and 0.4, negatives 0.5 and 0.1 -> 3 of 4 pairs ordered right
    assert roc_auc(np.array([[0, 0.9], [0, 0.4], [0, 0.5], [0, 0.1]]), np.array([1, 1, 0, 0])) == 0.75


def test_generic_formats_single_and_multi_label(tmp_path):
    folder = layouts.image_folder(str(tmp_path / "if"))
    data = read_benchmark_dataset("image_folder", folder)
    assert data.classes == ["anger", "fear", "joy"] and [len(data.folds[0][s]) for s in ("train", "val", "test")] == [
        24,
        9,
        12,
    ]
    lists = layouts.multilabel_lists(str(tmp_path / "ml"))
    for name in ("csv", "pickle"):
        data = read_benchmark_dataset(name, lists, multilabel=True)
        assert data.multilabel and data.metrics == ("map",) and data.classes == ["anger", "fear", "joy", "outdoor"]
        assert data.targets.shape == (28, 4) and data.targets[1].tolist() == [0, 1, 0, 1]
        fold = data.folds[0]  # no val file: val is held out of train
        assert len(fold["test"]) == 8 and len(fold["train"]) + len(fold["val"]) == 20
        with pytest.raises(InputError, match="multilabel=true"):
            read_benchmark_dataset(name, lists)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.faults
def test_pickle_file_list_refuses_code(tmp_path):
    lists = layouts.multilabel_lists(str(tmp_path / "ml"))
    with open(os.path.join(lists, "train.pkl"), "wb") as f:
        pickle.dump([["images/train/0.jpg", [_Boom()]]], f)
    with pytest.raises(InputError, match=r"train.pkl: .*refusing to load posix.system"):
        read_benchmark_dataset("pickle", lists)


def test_layout_errors_name_the_file_and_line(tmp_path):
    root = layouts.cub(str(tmp_path / "cub"))
    with open(os.path.join(root, "image_class_labels.txt"), "a") as f:
        f.write("x 3\n")
    with pytest.raises(InputError, match=r"image_class_labels.txt:31: expected '<id> <value>'"):
        read_benchmark_dataset("cub", root)
    memes = layouts.hateful_memes(str(tmp_path / "hm"), train=4, dev=2)
    with open(os.path.join(memes, "dev.jsonl"), "a") as f:
        f.write('{"id": 1, "img": "img/1.png"}\n')
    with pytest.raises(InputError, match=r"dev.jsonl:3: expected"):
        read_benchmark_dataset("hateful_memes", memes)
    pol = layouts.politics(str(tmp_path / "pol"), train=4, test=2)
    with open(os.path.join(pol, "test.csv"), "a") as f:
        f.write("images/x.jpg,\n")
    with pytest.raises(InputError, match=r"test.csv:4: expected 'path,label'"):
        read_benchmark_dataset("politics", pol)
    with pytest.raises(InputError, match="UnbiasedEmotion layout needs images"):
        read_benchmark_dataset("unbiased_emotion", str(tmp_path))


def test_missing_dataset_folder_names_the_config_keys(capsys):
    from vise_plugin.cli import run_cli, run_engine

    assert run_cli(run_engine, ["config=benchmark/linear/cub_r50", "config.benchmark.data_root=/nonexistent"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: cub dataset folder not found: /nonexistent/CUB_200_2011; set config.benchmark.data_root=<folder "
        "holding CUB_200_2011> or config.benchmark.dataset.root=<folder>"
    )


def test_class_activation_map_points_at_the_evidence():
    images = torch.zeros(2, 3, 32, 32)
    images[0, 0, :8, :8] = 5.0  # channel 0 lit top-left
    images[1, 1, 24:, 24:] = 5.0  # channel 1 lit bottom-right
    trunk = nn.Sequential(nn.AvgPool2d(4))  # (B, 3, 8, 8) "features"
    weight = np.eye(3, dtype=np.float32)
    cams = class_activation_maps(trunk, weight, images, [0, 1])
    assert cams.shape == (2, 32, 32) and cams.min() >= 0 and cams.max() <= 1
    assert cams[0, :8, :8].mean() > 0.8 and cams[0, 24:, 24:].mean() < 0.1
    assert cams[1, 24:, 24:].mean() > 0.8 and cams[1, :8, :8].mean() < 0.1


def _csv(path, rows):
    with open(path, "w") as f:
        f.write("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))


def test_val_and_test_read_from_one_file_or_sharing_images_stop_naming_both(tmp_path, caplog):
    root = layouts.politics(str(tmp_path / "pol"))
    os.replace(os.path.join(root, "test.csv"), os.path.join(root, "val.csv"))
    # A new user's override: test from val.csv, with val.csv also in the folder (the default val file).
    with pytest.raises(
        InputError,
        match=r"^the val and test splits are both read from .*val.csv; point "
        r"config.benchmark.dataset.files.test at its own file$",
    ):
        read_benchmark_dataset("csv", root, files={"test": "val.csv"})
    with open(os.path.join(root, "val.csv")) as f:
        rows = [line.strip().split(",") for line in f][1:]
    _csv(os.path.join(root, "test.csv"), rows[:3] + [("images/train/0.jpg", "left")])
    with pytest.raises(
        InputError,
        match=r"the val and test splits of csv share 3 image\(s\), e.g. images/test/0.jpg "
        r"\(val: .*val.csv; test: .*test.csv\)",
    ):
        read_benchmark_dataset("csv", root)
    _csv(os.path.join(root, "test.csv"), [("images/train/0.jpg", "left")])
    with pytest.raises(
        InputError, match=r"the train and test splits of csv share 1 image\(s\), e.g. images/train/0.jpg"
    ):
        read_benchmark_dataset("csv", root)


def test_the_benchmark_log_names_the_file_of_each_split(tmp_path):
    from vise_plugin.config import compose_config
    from vise_plugin.evaluation import run_benchmark

    root = layouts.politics(str(tmp_path / "pol"))
    run_benchmark(
        compose_config(
            [
                "config=benchmark/linear/politics_r50",
                "config.model.trunk=tiny",
                "config.device=cpu",
                "config.benchmark.image_size=32",
                "config.benchmark.resize_ratio=1.0",
                "config.benchmark.num_workers=0",
                "config.benchmark.linear.epochs=1",
                "config.benchmark.cam.num_images=0",
                f"config.benchmark.dataset.root={root}",
                f"config.run_dir={tmp_path}/run",
                f"config.benchmark.results_table={tmp_path}/table.md",
            ]
        )
    )
    with open(os.path.join(tmp_path, "run", "log.txt")) as f:
        log = f.read()
    assert (
        f"splits: train 21 images from {root}/train.csv; val 3 images from 0.1 of train held out (seed 0); "
        f"test 10 images from {root}/test.csv"
    ) in log


def test_every_missing_image_is_found_not_only_the_first_and_last(tmp_path):
    root = layouts.image_folder(str(tmp_path / "if"))
    data = read_benchmark_dataset("image_folder", root)
    os.remove(os.path.join(root, data.paths[5]))
    os.remove(os.path.join(root, data.paths[9]))
    with pytest.raises(
        InputError,
        match=rf"2 of {len(data.paths)} image files listed by the image_folder layout do "
        rf"not exist, e.g. \['{data.paths[5]}', '{data.paths[9]}'\]",
    ):
        data.check_files()


def test_a_stratified_val_split_that_cannot_be_says_which_classes_are_too_small(caplog):
    from vise_plugin.evaluation.datasets import hold_out

    labels = np.array([0] * 10 + [1] * 10 + [2])
    with caplog.at_level("WARNING"):
        kept, held = hold_out(np.arange(21), 0.2, 0, labels)
    assert len(held) == 5 and not set(kept) & set(held)
    assert "val split not stratified (class id(s) [2] have a single image)" in caplog.text
