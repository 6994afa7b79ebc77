"""The paper's evaluation, rerunnable: weights of every baseline's layout, several weights side by side,
the fine-tune sweep, Hateful Memes by modality, and the comment target option."""

import json
import os
import re

import benchmark_layouts as layouts
import numpy as np
import published_layouts as published
import pytest
import torch
import torchvision
from PIL import Image

from vise_plugin.config import compose_config
from vise_plugin.errors import ConfigError, InputError
from vise_plugin.evaluation import run_benchmark
from vise_plugin.models import build_trunk, load_trunk_state, load_trunk_weights
from vise_plugin.models.weights import read_state_file
from vise_plugin.registry import WEIGHT_FORMATS

SMALL = [
    "config.device=cpu",
    "config.benchmark.image_size=32",
    "config.benchmark.resize_ratio=1.0",
    "config.benchmark.num_workers=0",
    "config.benchmark.batch_size=16",
    "config.benchmark.linear.epochs=10",
    "config.benchmark.cam.num_images=0",
]


@pytest.mark.parametrize("name", WEIGHT_FORMATS.names())
def test_every_weights_layout_loads_into_its_trunk_with_every_key_matched(name, tmp_path):
    fmt = WEIGHT_FORMATS.get(name)
    torch.manual_seed(0)
    source = build_trunk(fmt.trunks[0])
    path = str(tmp_path / f"{name}.pth")
    torch.save(fmt.example(source.state_dict()), path)
    target = load_trunk_weights(build_trunk(fmt.trunks[0]), path)  # strict: a missing or extra key fails
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())


def test_a_weights_file_of_an_unknown_layout_is_one_line_naming_the_known_ones(tmp_path):
    path = str(tmp_path / "odd.pth")
    torch.save({"backbone.stem.weight": torch.zeros(1)}, path)
    with pytest.raises(
        InputError,
        match=r"odd.pth: weights of an unknown layout \(first keys \['backbone.stem.weight'\]\); "
        r"recognised: clip_rn50, emotionnet, hub, moco_v2, moco_v3, torchvision, "
        r"vise_checkpoint, vissl$",
    ):
        load_trunk_weights(build_trunk("resnet50"), path)


def test_a_clip_file_for_a_resnet50_trunk_names_the_trunk_to_set(tmp_path):
    path = str(tmp_path / "clip.pt")
    torch.save(WEIGHT_FORMATS.get("clip_rn50").example(build_trunk("clip_rn50").state_dict()), path)
    with pytest.raises(
        InputError, match=r"clip.pt: does not fit the trunk .*the file is for config.model.trunk=clip_rn50$"
    ):
        load_trunk_weights(build_trunk("resnet50"), path)


@pytest.mark.parametrize("release", list(published.RELEASES))
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_each_published_checkpoint_loads_into_its_trunk_from_the_tensors_its_layout_names(release, tmp_path):
    path = str(tmp_path / release)
    written = published.RELEASES[release](path)
    assert [name for name, fmt in WEIGHT_FORMATS if fmt.detect(read_state_file(path))] == [written.layout]
    with torch.device("meta"):  # the trunk's keys and shapes without its memory
        trunk = build_trunk(written.trunk)
    load_trunk_weights(trunk, path)  # what config.model.weights runs: strict, every key with its shape
    came_from = published.came_from(written, load_trunk_state(path)[0])
    assert sorted(came_from.values()) == sorted(written.trunk_sources)  # the right encoder, each tensor once
    assert all(src.rsplit(".", 1)[1] == k.rsplit(".", 1)[1] for k, src in came_from.items())


@pytest.fixture(scope="module")
def benchmark_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("comparison")
    return {
        "politics": layouts.politics(str(base / "politics")),
        "cub": layouts.cub(str(base / "CUB_200_2011")),
        "colours": layouts.image_folder(str(base / "colours"), {"train": 30, "val": 6, "test": 10}),
        "memes": layouts.hateful_memes(
            str(base / "memes"), train=120, dev=60, neutral_text_every=2, wrong_image_every=3
        ),
    }


def test_one_command_compares_several_weights_on_the_demo_world_in_a_table_and_a_chart(tiny_run, tmp_path):
    from vise_plugin.demo import generate_downstream
    from vise_plugin.evaluation.suite import run_suite

    downstream = generate_downstream(str(tmp_path / "downstream"), {"train": 8, "val": 4, "test": 8}, seed=0)
    supervised = str(tmp_path / "in_sup.pth")  # the layout of torchvision's ImageNet weights
    torch.save(torchvision.models.resnet50().state_dict(), supervised)
    out = str(tmp_path / "compare")
    vise = os.path.join(tiny_run["run_dir"], "checkpoint.torch")
    code = run_suite(
        [
            f"weights={{vise: {vise}, in_sup: {{weights: {supervised}, trunk: resnet50}}, random: null}}",
            "benchmarks=linear/demo_emotion,finetune/demo_emotion",
            f"output={out}",
            "config.model.trunk=tiny",
            f"config.benchmark.dataset.root={downstream}",
            "config.benchmark.finetune.epochs=1",
            "config.benchmark.linear.epochs=10",
            "config.benchmark.cam.num_images=0",
        ]
    )
    assert code == 0
    with open(os.path.join(out, "comparison.md")) as f:
        table = f.read()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == "| weights | linear/demo_emotion | finetune/demo_emotion |"
    assert [r.split(" | ")[0] for r in rows[1:4]] == ["| vise", "| in_sup", "| random"]
    assert all(re.fullmatch(r"\| \w+ \| \d+\.\d \| \d+\.\d \|", r) for r in rows[1:4]), rows
    assert all("lr " in r and "wd " in r and "trunk_lr " in r for r in rows[5:8])  # chosen on val, each cell
    trunks = []  # each weights evaluated with its own trunk
    for name in ("vise", "in_sup", "random"):
        with open(os.path.join(out, name, "results.md")) as f:
            trunks += [line.split(" | ")[2] for line in f if "demo_emotion" in line]
    assert trunks == ["tiny", "tiny", "resnet50", "resnet50", "tiny", "tiny"]
    with Image.open(os.path.join(out, "comparison.png")) as chart:
        chart.load()
        assert chart.size[0] > 300 and len(chart.getcolors(1 << 16)) > 3


@pytest.mark.learning
def test_the_finetune_sweep_picks_by_val_and_lists_every_point(benchmark_data, tmp_path):
    run_dir = str(tmp_path / "sweep")
    record = run_benchmark(
        compose_config(
            [
                "config=benchmark/finetune/cub_r50",
                "config.model.trunk=tiny",
                *SMALL,
                "config.benchmark.finetune.batch_size=8",
                "config.benchmark.dataset.name=image_folder",
                f"config.benchmark.dataset.root={benchmark_data['colours']}",
                "config.benchmark.finetune.crop_scale_min=0.5",
                f"config.run_dir={run_dir}",
                f"config.benchmark.results_table={tmp_path}/table.md",
                "config.benchmark.finetune.sweep.trunk_lr=[0.0,0.01]",
                "config.benchmark.finetune.sweep.head_lr=[0.0,0.1]",
                "config.benchmark.finetune.sweep.epochs=[2]",
            ]
        )
    )
    fold = record["folds"][0]
    assert len(fold["sweep"]) == 4
    best = max(fold["sweep"], key=lambda p: p["val_acc"])
    frozen = next(p for p in fold["sweep"] if p["trunk_lr"] == p["head_lr"] == 0)  # learns nothing
    assert best["val_acc"] > frozen["val_acc"] + 20
    assert fold["val_acc"] == best["val_acc"] and fold["test_acc"] == pytest.approx(
        next(
            p["test_acc"] for p in fold["sweep"] if (p["trunk_lr"], p["head_lr"]) == (fold["trunk_lr"], fold["head_lr"])
        )
    )
    with open(os.path.join(run_dir, "finetune_sweep.md")) as f:
        lines = f.read().splitlines()
    assert len(lines) == 2 + 4 and lines[0].startswith("| trunk lr | head lr | epochs | val acc | test acc |")
    assert sum(line.endswith("| 1/1 folds |") for line in lines) == 1


def test_hateful_memes_by_modality_and_both_at_least_as_good_as_the_better_one(benchmark_data, tmp_path):
    results = {}
    for inputs in ("[text]", "[image]", "[image,text]"):
        record = run_benchmark(
            compose_config(
                [
                    "config=benchmark/linear/hateful_memes_r50",
                    "config.model.trunk=tiny",
                    *SMALL,
                    "config.benchmark.linear.epochs=30",
                    f"config.benchmark.dataset.root={benchmark_data['memes']}",
                    f"config.run_dir={tmp_path}/{inputs.strip('[]').replace(',', '_')}",
                    f"config.benchmark.results_table={tmp_path}/table.md",
                    f"config.benchmark.inputs={inputs}",
                ]
            )
        )
        results[inputs] = record["summary"]["test_acc"]["mean"]
    # each modality alone is wrong on memes the other gets right (neutral texts, images of the other colour)
    assert max(results["[text]"], results["[image]"]) < 90, results
    assert results["[image,text]"] >= max(results["[text]"], results["[image]"]) + 5, results


def test_the_uniform_comment_target_spreads_over_the_distinct_clusters(tmp_path):
    from vise_plugin.data import EngagementLabels
    from vise_plugin.labels import LabelStore, write_label_store

    write_label_store(
        str(tmp_path / "labels"),
        ["p1"],
        ["a.jpg"],
        [np.array([[0, 2], [3, 1]])],
        np.array([2]),
        {"tasks": {"comments": {"k": 5}, "reactions": {"k": 3}}},
    )
    store = LabelStore(str(tmp_path / "labels"))
    histogram = EngagementLabels(store, "").targets_at(0)["comments"]
    uniform = EngagementLabels(store, "", "uniform").targets_at(0)["comments"]
    assert torch.allclose(histogram, torch.tensor([2 / 3, 0, 0, 1 / 3, 0]))
    assert torch.allclose(uniform, torch.tensor([0.5, 0, 0, 0.5, 0]))
    from vise_plugin.data.tar_shards import ShardTargets  # the targets of posts read from tar shards

    shards = ShardTargets({"tasks": {"comments": {"k": 5}, "reactions": {"k": 3}}}, "uniform")
    assert torch.allclose(shards.of({"comments": [[0, 2], [3, 1]], "reactions": 1})["comments"], uniform)
    with pytest.raises(ConfigError, match=r"config.data.comment_target='uniformly': use one of histogram, uniform"):
        EngagementLabels(store, "", "uniformly")


def test_the_table_gives_mean_and_std_over_splits_and_a_dash_where_a_run_is_missing(tmp_path):
    from vise_plugin.evaluation.comparison import write_comparison

    folds = [{"test_acc": 60.0, "lr": 0.1, "weight_decay": 1e-4}, {"test_acc": 70.0, "lr": 0.01, "weight_decay": 1e-4}]
    run = tmp_path / "vise" / "linear_politics"
    run.mkdir(parents=True)
    record = {"metrics": ["acc"], "folds": folds, "summary": {"test_acc": {"mean": 65.0, "std": 5.0}}}
    (run / "metrics.json").write_text(json.dumps(record) + "\n")
    write_comparison(str(tmp_path), ["vise", "random"], ["linear/politics"])
    rows = [r for r in (tmp_path / "comparison.md").read_text().splitlines() if r.startswith("| ")]
    assert rows[1:3] == ["| vise | 65.0 ± 5.0 |", "| random | - |"]
    assert rows[4] == "| vise | lr 0.01/0.1, wd 0.0001 |"  # differing choices across splits are all shown


def test_scores_print_one_way_in_every_table():
    from vise_plugin.evaluation.results import format_score

    assert format_score(0.612345, "roc_auc", 0.01) == "0.6123 ± 0.0100"  # an AUC keeps 4 decimals everywhere
    assert format_score(71.234, "acc", 1.049) == "71.23 ± 1.05" and format_score(71.25, "mAP", decimals=1) == "71.2"
