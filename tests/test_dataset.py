import numpy as np
import pytest
import torch
from PIL import Image

from vise_plugin.data import EngagementImages, VisEEngagementDataset
from vise_plugin.data.transforms import eval_transform
from vise_plugin.labels import LabelStore, write_label_store


@pytest.fixture
def store_folder(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / name)
    pairs = [np.array([[0, 2], [3, 1]]), np.zeros((0, 2), int), np.array([[4, 5]])]
    write_label_store(
        str(tmp_path / "labels"),
        ["p1", "p2", "p3"],
        ["a.jpg", "b.jpg", "c.jpg"],
        pairs,
        np.array([2, -1, 0]),
        {"tasks": {"comments": {"k": 5}, "reactions": {"k": 3}}, "image_root": str(tmp_path)},
    )
    return str(tmp_path / "labels")


def test_targets_are_normalised_histograms_and_reaction_ids(store_folder):
    store = LabelStore(store_folder)
    ds = EngagementImages(store, store.meta["image_root"], eval_transform(16, 1.0))
    first, second, third = ds[0], ds[1], ds[2]
    assert first["input"].shape == (3, 16, 16)
    assert torch.allclose(first["target"]["comments"], torch.tensor([2 / 3, 0, 0, 1 / 3, 0]))
    assert first["target"]["reactions"].item() == 2
    assert second["target"]["comments"].sum().item() == 0  # no comments: all zero
    assert second["target"]["reactions"].item() == -1  # no reactions
    assert torch.allclose(third["target"]["comments"], torch.tensor([0, 0, 0, 0, 1.0]))


def test_store_is_memory_mapped(store_folder):
    store = LabelStore(store_folder)
    assert isinstance(store.comment_labels, np.memmap) and isinstance(store.reactions, np.memmap)
    assert store.ids[2] == "p3" and store.images[0] == "a.jpg" and len(store) == 3


def test_pickled_store_reopens_the_memory_maps(store_folder):
    import pickle

    blob = pickle.dumps(LabelStore(store_folder))
    assert len(blob) < 1000
    store = pickle.loads(blob)
    assert isinstance(store.comment_labels, np.memmap) and store.ids[1] == "p2"


def test_classy_dataset_batches_dict_targets(store_folder):
    ds = VisEEngagementDataset(store_folder, batchsize_per_replica=2, image_size=16, shuffle=False)
    ds.set_num_workers(0)
    batch = next(iter(ds.iterator(current_phase_id=0)))
    assert batch["input"].shape == (2, 3, 16, 16)
    assert batch["target"]["comments"].shape == (2, 5) and batch["target"]["reactions"].dtype == torch.int64


def test_subset_is_seeded(store_folder):
    a = VisEEngagementDataset(store_folder, subset=2, seed=1).dataset.indices
    b = VisEEngagementDataset(store_folder, subset=2, seed=1).dataset.indices
    assert len(a) == 2 and list(a) == list(b)


def test_missing_store_names_the_folder(tmp_path):
    from vise_plugin.errors import InputError

    with pytest.raises(InputError, match="nowhere"):
        LabelStore(str(tmp_path / "nowhere"))


def test_targets_for_normalises_paths_and_names_an_unknown_one(store_folder):
    from vise_plugin.data import EngagementLabels
    from vise_plugin.errors import InputError

    store = LabelStore(store_folder)
    root = store.meta["image_root"]
    source = EngagementLabels(store, root)
    third = source.targets_at(2)
    for path in (f"{root}/c.jpg", "./c.jpg", ".//c.jpg", f"{root}//./c.jpg"):
        got = source.targets_for(path)
        assert torch.equal(got["comments"], third["comments"]) and got["reactions"].item() == 0, path
    for path in ("/elsewhere/c.jpg", "photos/c.jpg"):  # another root: not the store's image, no silent zeros
        with pytest.raises(InputError) as failed:
            source.targets_for(path)
        assert path in str(failed.value) and store_folder in str(failed.value)


def _tag_list(folder, images):
    import json

    (folder / "vocab.txt").write_text("red\nblue\n")
    (folder / "tags.jsonl").write_text("".join(json.dumps({"image": i, "tags": ["red"]}) + "\n" for i in images))
    return str(folder / "tags.jsonl"), str(folder / "vocab.txt")


def test_a_second_source_matching_too_few_of_the_images_stops_in_one_line(store_folder, tmp_path):
    from vise_plugin.data.target_sources import build_target_sources
    from vise_plugin.errors import InputError

    unmatched = [f"elsewhere/{n}.jpg" for n in range(7)]
    for images, share in (
        (unmatched, "7 of the 7"),
        (["a.jpg", *unmatched], "7 of the 8"),
    ):  # none, then too few, match
        tag_list, vocab = _tag_list(tmp_path, images)
        data = {"labels": store_folder, "tags": {"list": tag_list, "vocab": vocab}}
        with pytest.raises(InputError) as failed:
            build_target_sources(["web_tags", "engagement_labels"], data)
        message = str(failed.value)
        assert share in message and store_folder in message and "\n" not in message
        assert sum(p in message for p in unmatched) == 5  # up to five examples
    tag_list, vocab = _tag_list(tmp_path, ["a.jpg", "./b.jpg", "elsewhere/c.jpg"])  # one of three unmatched
    tags, labels = build_target_sources(
        ["web_tags", "engagement_labels"], {"labels": store_folder, "tags": {"list": tag_list, "vocab": vocab}}
    )
    assert (
        labels.targets_for("./b.jpg")["reactions"].item() == -1 and labels.targets_for("a.jpg")["reactions"].item() == 2
    )
    assert labels.targets_for("elsewhere/c.jpg")["comments"].sum().item() == 0  # counted above: nothing to learn
    with pytest.raises(InputError, match="stops the run"):
        VisEEngagementDataset(store_folder, tag_list=_tag_list(tmp_path, unmatched)[0], tag_vocab=vocab)


def test_image_paths_normalise_alike_as_keys_and_as_lookups_urls_included():
    from vise_plugin.data.target_sources import image_key, relative_image_path

    assert relative_image_path("./a//b.jpg", "") == image_key("a/b.jpg") == "a/b.jpg"
    assert relative_image_path("/data/images/a/b.jpg", "/data/images") == "a/b.jpg"
    assert relative_image_path("s3://bucket/images/a/b.jpg", "s3://bucket/images") == "a/b.jpg"
    assert (
        relative_image_path("s3://bucket/other/b.jpg", "")
        == image_key("s3://bucket/other/b.jpg")
        == "s3://bucket/other/b.jpg"
    )  # a URL is its own key: not collapsed to s3:/bucket/...
