"""VisE inside VISSL: VISSL's own trainer with the project's head, loss, data source and collator, and
weights crossing both ways. Needs VISSL 0.1.6 (docs: inside VISSL); skipped, with the reason
shown, only where it cannot be imported."""

import json
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

pytest.importorskip(
    "vissl",
    reason="VISSL is not installed (docs: inside VISSL: pip install --no-deps "
    "vissl==0.1.6, then reinstall classy-vision==0.7.0 fairscale==0.4.13)",
)
from vise_plugin.integrations import vissl as vise_vissl  # noqa: E402
from vise_plugin.integrations.vissl_run import vissl_config  # noqa: E402


def _vissl_run(labels, checkpoint_dir, *extra):
    cmd = [
        sys.executable,
        "-m",
        "vise_plugin.integrations.vissl_run",
        "config=vissl/vise_quick_cpu",
        f"config.DATA.TRAIN.DATA_PATHS=[{labels}]",
        f"config.CHECKPOINT.DIR={checkpoint_dir}",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(checkpoint_dir.parent))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "All Done!" in out, out[-3000:]
    return out


def _official_layout():
    return torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])


def _small_store(tiny_world, folder, num_posts):
    """The first ``num_posts`` posts of the tiny world's label store, as a store of their own."""
    from vise_plugin.labels import LabelStore, write_label_store

    store = LabelStore(tiny_world["labels"])
    rows = range(num_posts)
    write_label_store(
        str(folder),
        [store.ids[i] for i in rows],
        [store.images[i] for i in rows],
        [store.comment_pairs(i) for i in rows],
        np.asarray(store.reactions)[:num_posts],
        {"tasks": store.meta["tasks"], "image_root": store.meta["image_root"]},
    )
    return str(folder)


LEARN_EPOCHS = 20


@pytest.fixture(scope="module")
def vissl_run(tiny_world, tmp_path_factory):
    """VISSL's trainer, one process, ResNet-50 at 32 px: one batch of 4 posts seen 20 times, a strong
    signal whatever the CPU's kernels (the loss falls to about 0.6 of its start with AVX512 or the default
    kernels); a checkpoint after the first and the last epoch only."""
    base = tmp_path_factory.mktemp("vissl")
    store = _small_store(tiny_world, base / "labels4", 4)
    checkpoints = base / "checkpoints"
    _vissl_run(
        store,
        checkpoints,
        f"config.OPTIMIZER.num_epochs={LEARN_EPOCHS}",
        f"config.CHECKPOINT.CHECKPOINT_FREQUENCY={LEARN_EPOCHS}",
    )
    return checkpoints


@pytest.mark.learning
def test_vissl_trains_the_vise_head_and_loss_from_a_shipped_config(vissl_run):
    with open(vissl_run / "stdout.json") as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert len(losses) == LEARN_EPOCHS  # every iteration logged: one batch per epoch
    assert all(torch.isfinite(torch.tensor(losses)))
    assert statistics.mean(losses[-5:]) < 0.8 * statistics.mean(losses[:5]), losses
    state = torch.load(vissl_run / "checkpoint.torch", weights_only=True)
    heads = state["classy_state_dict"]["base_model"]["model"]["heads"]
    assert {"0.fcs.comments.weight", "0.fcs.reactions.weight"} <= set(heads)


def test_a_vissl_checkpoint_exports_to_the_official_hub_layout(vissl_run, tmp_path):
    from vise_plugin.cli import main_export_hub

    out = str(tmp_path / "vissl_r50.pth")
    assert main_export_hub([str(vissl_run / "checkpoint.torch"), out]) == 0
    exported = torch.load(out, weights_only=True)
    _official_layout().load_state_dict(exported, strict=True)
    trunk = torch.load(vissl_run / "checkpoint.torch", weights_only=True)["classy_state_dict"]["base_model"]["model"][
        "trunk"
    ]
    assert torch.equal(exported["4.0.conv1.weight"], trunk["_feature_blocks.layer1.0.conv1.weight"])
    assert torch.equal(exported["1.running_mean"], trunk["_feature_blocks.bn1.running_mean"])


def test_a_project_checkpoint_initialises_every_trunk_key_of_a_vissl_model(r50_checkpoint, tmp_path):
    from vissl.models import build_model
    from vissl.utils.checkpoint import init_model_from_consolidated_weights

    from vise_plugin.cli import main_export_hub

    checkpoint, trained = r50_checkpoint
    out = str(tmp_path / "for_vissl.torch")
    assert main_export_hub([checkpoint, out, "--format", "vissl"]) == 0
    _, config = vissl_config(
        [
            "config=vissl/vise_quick_cpu",
            f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={out}",
            "config.DATA.TRAIN.DATA_PATHS=[unused]",
            f"config.CHECKPOINT.DIR={tmp_path}/vissl",
            "config.MODEL.HEAD.PARAMS=[[vise_multi_head,{in_features:2048,tasks:{comments:8,reactions:4}}]]",
        ]
    )
    model = build_model(config.MODEL, config.OPTIMIZER)
    init_model_from_consolidated_weights(
        config,
        model,
        torch.load(out, weights_only=True),
        state_dict_key_name=config.MODEL.WEIGHTS_INIT.STATE_DICT_KEY_NAME,
        skip_layers=[],
    )
    ours = {f"_feature_blocks.{k}": v for k, v in _official_to_torchvision(trained.state_dict()).items()}
    theirs = model.trunk.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)


def _official_to_torchvision(state):
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        out[f"{names[int(head)]}.{rest}"] = value
    return out


def test_two_vissl_processes_train_on_gloo(tiny_world, tmp_path):
    small = _small_store(tiny_world, tmp_path / "labels16", 16)  # 2 steps of 4 images on each of the 2 processes
    checkpoints = tmp_path / "checkpoints"
    _vissl_run(small, checkpoints, "config.DISTRIBUTED.NUM_PROC_PER_NODE=2", "config.OPTIMIZER.num_epochs=1")
    with open(checkpoints / "stdout.json") as f:
        assert [json.loads(line)["iter"] for line in f] == [0, 1]
    assert (checkpoints / "checkpoint.torch").exists()


def test_the_collator_packs_what_the_loss_unpacks(tiny_world):
    from vise_plugin.data import EngagementLabels
    from vise_plugin.labels import LabelStore
    from vise_plugin.registry import build_classy

    items = [
        {"data": [torch.zeros(3, 8, 8)], "label": [row], "data_valid": [valid], "data_idx": [row]}
        for row, valid in ((0, 1), (5, 1), (7, -1))
    ]
    batch = vise_vissl.vise_collator(items, label_store=tiny_world["labels"])
    packed = batch["label"][0]
    assert batch["data"][0].shape == (3, 3, 8, 8) and packed.shape == (3, 8 + 1)
    source = EngagementLabels(LabelStore(tiny_world["labels"]), "")
    expected = [source.targets_at(0), source.targets_at(5), source.empty()]  # the unreadable image: no targets
    dicts = {k: torch.stack([t[k] for t in expected]) for k in expected[0]}
    output = {"comments": torch.randn(3, 8), "reactions": torch.randn(3, 4)}
    packed_loss = build_classy(
        "loss", {"name": "vise_loss", "packed_targets": {"label_store": tiny_world["labels"]}}, "l"
    )
    plain = build_classy("loss", {"name": "vise_loss"}, "l")
    assert packed_loss(output, packed).item() == pytest.approx(plain(output, dicts).item(), rel=1e-6)
