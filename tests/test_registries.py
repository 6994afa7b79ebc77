"""Every registered part builds from its defaults and runs (timm's smoke test, one per registry).

The parameter lists are read from the registries, so a new registration of the project is covered
without touching this file; a component that cannot build from its defaults alone gets its extra
parameters in ``EXTRA`` below.
"""

import math

import benchmark_layouts as layouts
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from vise_plugin.labels import LabelStore
from vise_plugin.registry import (
    BENCHMARK_DATASETS,
    COMMENT_ENCODERS,
    DATASET_REGISTRY,
    ENGINES,
    HEAD_REGISTRY,
    KMEANS,
    LOSS_REGISTRY,
    LR_SCHEDULES,
    METRICS,
    MODEL_REGISTRY,
    POOLING,
    PROTOCOLS,
    REGISTRIES,
    TARGET_SOURCES,
    TRUNKS,
    build_classy,
)


def ours(registry) -> list:
    """The names the project itself registered (classy-vision's own parts are classy-vision's to test)."""
    items = registry.items() if isinstance(registry, dict) else registry
    return sorted(name for name, obj in items if getattr(obj, "__module__", "").startswith("vise_plugin"))


# targets as a data set would describe them: K classes, and the tags' text embeddings
TARGETS = {
    "comments": {"num_classes": 5},
    "reactions": {"num_classes": 3},
    "tags": {"num_classes": 4, "embeddings": torch.nn.functional.normalize(torch.randn(4, 8), dim=1)},
}
BATCH_TARGETS = {
    "comments": torch.tensor([[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 0]]),
    "reactions": torch.tensor([2, -1]),
    "tags": torch.tensor([[0, 1.0, 0, 0], [0.5, 0, 0.5, 0]]),
}
EXTRA = {
    "loss": {
        "merged_loss": {
            "parts": [
                {"loss": {"name": "vise_loss"}, "keys": ["comments", "reactions"]},
                {"loss": {"name": "web_tag_loss"}, "keys": ["tags", "tag_embedding"]},
            ]
        }
    },
    "model": {"vise_model": {"trunk": "tiny", "head_configs": ["vise_multi_head", "web_tag_head"], "targets": TARGETS}},
}


def test_every_concept_has_a_smoke_test_here():
    covered = {
        "trunk",
        "target source",
        "comment encoder",
        "K-means back-end",
        "lr schedule",
        "engine",
        "benchmark dataset",
        "metric",
        "evaluation protocol",
        "pooling",
        "weights format",
    }  # test_comparison.py: every layout loads into its trunk
    assert set(REGISTRIES) == covered


@pytest.mark.parametrize("name", ours(TRUNKS))
def test_trunk(name):
    trunk = TRUNKS.get(name)()
    size = getattr(trunk, "input_size", 32)  # CLIP's attention pooling is sized for 224 x 224
    out = trunk(torch.randn(2, 3, size, size))
    assert out.dim() == 4 and out.shape[0] == 2
    out.mean().backward()
    assert all(p.grad is not None for p in trunk.parameters())


def _heads_output(names=None):
    out = {}
    for name in names or ours(HEAD_REGISTRY):
        head = build_classy("head", {"name": name, "in_features": 16, "targets": TARGETS}, "head")
        out.update(head(torch.randn(2, 16, 3, 3)))
    return out


@pytest.mark.parametrize("name", ours(HEAD_REGISTRY))
def test_head(name):
    head = build_classy("head", {"name": name, "in_features": 16, "targets": TARGETS}, "head")
    out = head(torch.randn(2, 16, 3, 3, requires_grad=True))
    assert out and all(v.shape[0] == 2 and torch.isfinite(v).all() for v in out.values())
    sum(v.sum() for v in out.values()).backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize("name", ours(LOSS_REGISTRY))
def test_loss(name):
    loss = build_classy("loss", {"name": name, "targets": TARGETS, **EXTRA["loss"].get(name, {})}, "loss")
    outputs = {k: v.detach().requires_grad_() for k, v in _heads_output().items()}
    used = getattr(loss, "outputs", None)
    value = loss({k: v for k, v in outputs.items() if used is None or k in used}, BATCH_TARGETS)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert any(v.grad is not None and v.grad.abs().sum() > 0 for v in outputs.values())


@pytest.mark.parametrize("name", ours(MODEL_REGISTRY))
def test_model(name):
    model = build_classy("model", {"name": name, **EXTRA["model"].get(name, {})}, "model")
    out = model(torch.randn(2, 3, 32, 32))
    sum(v.float().sum() for v in out.values()).backward()


@pytest.fixture(scope="module")
def data_cfg(tiny_world, tmp_path_factory):
    """``config.data`` of every kind of training data the sources and datasets read: the tiny world's
    label store, its web tags, its tar shards and its images as img2dataset writes them."""
    from test_img2dataset_source import img2dataset_folder

    from vise_plugin.config import compose_config
    from vise_plugin.data.shard_writer import run_shard_job
    from vise_plugin.demo.world import write_demo_tags

    tag_list, vocab = write_demo_tags(tiny_world["posts"])
    shards = str(tmp_path_factory.mktemp("registry_shards") / "shards")
    run_shard_job(
        compose_config(
            [
                "config=demo/vise_tiny",
                f"config.data.labels={tiny_world['labels']}",
                f"config.shards.output={shards}",
                "config.shards.num_workers=1",
            ]
        ).config
    )
    downloaded = str(tmp_path_factory.mktemp("registry_img2dataset"))
    img2dataset_folder(LabelStore(tiny_world["labels"]), downloaded)
    return {
        "labels": tiny_world["labels"],
        "image_root": None,
        "shards": shards,
        "img2dataset": downloaded,
        "tags": {"list": tag_list, "vocab": vocab, "image_root": tiny_world["folder"], "text_encoder": None},
    }


@pytest.mark.parametrize("name", ours(TARGET_SOURCES))
def test_target_source(name, data_cfg):
    source = TARGET_SOURCES.get(name).from_config({}, data_cfg, "")
    assert len(source) > 0
    targets, empty, specs = source.targets_at(0), source.empty(), source.specs()
    assert set(targets) == set(empty) == set(specs)
    assert set(source.targets_for(source.path(0))) == set(specs)


@pytest.mark.parametrize("name", ours(DATASET_REGISTRY))
def test_dataset(name, data_cfg):
    config = {
        "name": name,
        "data": data_cfg,
        "batchsize_per_replica": 2,
        "image_size": 32,
        "labels": data_cfg["labels"],
        "tag_list": data_cfg["tags"]["list"],
        "tag_vocab": data_cfg["tags"]["vocab"],
    }
    images = build_classy("dataset", config, "dataset").dataset
    if isinstance(images, torch.utils.data.IterableDataset):  # it yields whole batches of this rank
        batch = next(iter(images))
        assert batch["input"].shape == (2, 3, 32, 32) and set(batch["target"]) == set(images.target_specs())
        assert torch.equal(next(iter(images))["input"], batch["input"])  # the seed fixes the stream and the crops
        return
    batch = default_collate([images[(0, 1)], images[(1, 2)], images.placeholder_item()])
    assert batch["input"].shape == (3, 3, 32, 32) and set(batch["target"]) == set(images.target_specs())
    assert torch.equal(images[(0, 1)]["input"], images[(0, 1)]["input"])  # the seed fixes the crop


@pytest.mark.parametrize("name", ours(COMMENT_ENCODERS))
def test_comment_encoder(name, tmp_path):
    encoder = COMMENT_ENCODERS.get(name)()
    comments = ["so cute", "what a cute dog", "terrible news", "so sad", "cute cute dog"]
    x = encoder.fit(comments).transform(comments)
    assert x.shape == (5, encoder.dim)
    encoder.save(str(tmp_path))
    again = COMMENT_ENCODERS.get(name).load(str(tmp_path)).transform(comments)
    assert (
        abs(
            np.asarray(again.todense() if hasattr(again, "todense") else again)
            - np.asarray(x.todense() if hasattr(x, "todense") else x)
        ).max()
        < 1e-5
    )


@pytest.mark.parametrize("name", ours(KMEANS))
def test_kmeans(name):
    x = np.concatenate([np.random.default_rng(0).normal(c, 0.1, (10, 4)) for c in (0, 5, 10)]).astype(np.float32)
    centroids = KMEANS.get(name)(x, 3, 0)
    assert centroids.shape == (3, 4) and sorted(np.round(centroids[:, 0]).tolist()) == [0, 5, 10]


@pytest.mark.parametrize("name", ours(LR_SCHEDULES))
def test_lr_schedule(name):
    schedule = LR_SCHEDULES.get(name)(0.1)
    values = [schedule(t) for t in np.linspace(0, 0.99, 20)]
    assert values[0] == pytest.approx(0.1) and all(0 <= v <= 0.1 + 1e-9 for v in values)


@pytest.mark.parametrize("name", ours(ENGINES))
def test_engine_fails_in_one_line_without_its_inputs(name, tmp_path, capsys):
    from vise_plugin.cli import run_cli, run_engine

    config = {"pretrain": "pretrain/vise_r50_1m", "benchmark": "benchmark/linear/cub_r50", "demo": "demo/vise_demo"}
    overrides = [
        f"config.engine={name}",
        f"config.run_dir={tmp_path}/run",
        "config.data.labels=/nowhere",
        "config.benchmark.data_root=/nowhere",
        "config.demo.num_posts=0",
    ]
    code = run_cli(run_engine, [f"config={config.get(name, 'pretrain/vise_r50_1m')}", *overrides])
    assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("name", ours(BENCHMARK_DATASETS))
def test_benchmark_dataset(name, tmp_path):
    from vise_plugin.evaluation import read_benchmark_dataset

    write = {"csv": layouts.multilabel_lists, "pickle": layouts.multilabel_lists}.get(name) or getattr(layouts, name)
    data = read_benchmark_dataset(name, write(str(tmp_path / name)), multilabel=name in ("csv", "pickle"))
    assert len(data.paths) == len(data.targets) > 0 and data.folds and set(data.metrics) <= set(METRICS.names())


@pytest.mark.parametrize("name", ours(METRICS))
def test_metric(name):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 3))
    targets = (rng.random((20, 3)) < 0.4).astype(np.float32) if name == "map" else np.arange(20) % 3
    value = METRICS.get(name)(scores, targets)
    assert math.isfinite(value)
    perfect = METRICS.get(name)(targets * 10.0 if name == "map" else np.eye(3)[targets] * 10.0, targets)
    assert perfect >= value


@pytest.mark.parametrize("name", ours(PROTOCOLS))
def test_protocol(name, tmp_path):
    from vise_plugin.config import compose_config
    from vise_plugin.evaluation import read_benchmark_dataset
    from vise_plugin.feature_cache import FeatureCache
    from vise_plugin.models import build_trunk

    data = read_benchmark_dataset("image_folder", layouts.image_folder(str(tmp_path / "if")))
    b = compose_config(
        [
            "config=benchmark/linear/cub_r50",
            "config.benchmark.image_size=32",
            "config.benchmark.resize_ratio=1.0",
            "config.benchmark.num_workers=0",
            "config.benchmark.linear.epochs=2",
            "config.benchmark.finetune.epochs=1",
        ]
    ).config.benchmark
    folds, cam_trunk = PROTOCOLS.get(name)(
        build_trunk("tiny"), data, b, FeatureCache(str(tmp_path / "cache")), "cpu", 0, None, "fp32"
    )
    assert len(folds) == len(data.folds) and all(math.isfinite(f["test_acc"]) for f in folds)
    assert cam_trunk(torch.randn(1, 3, 32, 32)).dim() == 4


@pytest.mark.parametrize("name", ours(POOLING))
def test_pooling(name):
    out = POOLING.get(name)(torch.randn(2, 4, 3, 3))
    assert out.dim() == 2 and out.shape[0] == 2


@pytest.fixture
def gadgets(tmp_path, monkeypatch):
    """A registry whose one built-in module needs a package that is not installed yet."""
    import sys

    from vise_plugin import registry

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "vise_test_gadget_parts.py").write_text(
        "from vise_plugin.registry import GADGETS\n"
        "@GADGETS.register('hammer')\nclass Hammer:\n    pass\n"  # registered before the import that fails
        "import vise_test_optional_pkg\nGADGETS.register('spanner')(vise_test_optional_pkg.Spanner)\n"
    )
    monkeypatch.setattr(registry, "GADGETS", registry.Registry("gadget", ["vise_test_gadget_parts"]), raising=False)
    yield registry.GADGETS, tmp_path
    for name in ("vise_test_gadget_parts", "vise_test_optional_pkg"):
        sys.modules.pop(name, None)


def test_a_builtin_that_fails_to_import_is_named_on_every_lookup_and_retried(gadgets):
    from vise_plugin.errors import ConfigError

    registry, folder = gadgets
    for name in ("spanner", "hammer"):  # the second lookup still names the import error, not an empty registry
        with pytest.raises(ConfigError) as failed:
            registry.get(name, "config.gadget")
        message = str(failed.value)
        assert f"config.gadget={name!r}" in message and "vise_test_gadget_parts" in message
        assert "No module named 'vise_test_optional_pkg'" in message and "\n" not in message
    (folder / "vise_test_optional_pkg.py").write_text("class Spanner:\n    pass\n")  # installed meanwhile
    assert registry.get("spanner").__name__ == "Spanner" and registry.names() == ["hammer", "spanner"]
