"""Tiny benchmark datasets written in each dataset's published layout (32 px images whose colour
depends on the class, so a trunk can learn them)."""

import csv
import json
import os
import pickle

import numpy as np
from PIL import Image, ImageDraw

from vise_plugin.demo.world import EMOTIONS

# One colour per class: the class is plain to any trunk, random or trained, so a protocol that
# learns from the image must beat chance on these fixtures by a wide margin.
PALETTE = ((220, 40, 40), (40, 180, 40), (40, 60, 220), (230, 200, 30), (200, 40, 200), (30, 200, 210))


def _image(path: str, label: int, rng, size: int = 32) -> None:
    """The class's shape in the class's colour on a grey noisy background, at a random place and size."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = 2 * size
    background = np.clip(128 + rng.normal(0, 30, (s, s, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    r = rng.uniform(0.25, 0.4) * s
    cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
    color = tuple(int(np.clip(c + rng.normal(0, 15), 0, 255)) for c in PALETTE[label % len(PALETTE)])
    ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    image.resize((size, size), Image.BILINEAR).save(path)


def unbiased_emotion(root: str, per_class: int = 8, seed: int = 0) -> str:
    """``images/<emotion>/<object>/<n>.jpg`` for the six emotions."""
    rng = np.random.default_rng(seed)
    for label, emotion in enumerate(EMOTIONS):
        for i in range(per_class):
            _image(os.path.join(root, "images", emotion, ("dog", "cat")[i % 2], f"{i}.jpg"), label, rng)
    return root


def _write_csv(path: str, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)


def politics(root: str, train: int = 24, test: int = 10, seed: int = 0) -> str:
    """``train.csv`` / ``test.csv`` (``path,label`` with left/right) and the images they list."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        rows = []
        for i in range(n):
            side = i % 2
            rel = f"images/{split}/{i}.jpg"
            _image(os.path.join(root, rel), side, rng)
            rows.append((rel, ("left", "right")[side]))
        _write_csv(os.path.join(root, f"{split}.csv"), rows)
    return root


def hateful_memes(
    root: str, train: int = 40, dev: int = 10, seed: int = 0, neutral_text_every: int = 0, wrong_image_every: int = 0
) -> str:
    """``img/<id>.png`` with ``train.jsonl`` and ``dev.jsonl`` lines ``{"id", "img", "label", "text"}``.

    By default both the image's colour and the text give the label. ``neutral_text_every=n``: every n-th
    meme has a text that says nothing; ``wrong_image_every=m``: every m-th meme shows the other class's
    colour (offset so that the two rarely coincide): then each modality alone is wrong on some memes
    that the other gets right."""
    rng = np.random.default_rng(seed)
    texts = ("have a lovely day friends", "those people are vermin and should leave")
    for split, n, offset in (("train", train, 10000), ("dev", dev, 20000)):
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, f"{split}.jsonl"), "w") as f:
            for i in range(n):
                label = i % 2
                shown = 1 - label if wrong_image_every and (i // 2) % wrong_image_every == 1 else label
                _image(os.path.join(root, "img", f"{offset + i}.png"), shown, rng)
                text = (
                    "a picture with some words on it"
                    if neutral_text_every and (i // 2) % neutral_text_every == 0
                    else texts[label]
                )
                f.write(
                    json.dumps({"id": offset + i, "img": f"img/{offset + i}.png", "label": label, "text": text}) + "\n"
                )
    return root


def cub(root: str, num_classes: int = 3, per_class: int = 10, seed: int = 0) -> str:
    """The CUB-200-2011 release files: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt."""
    rng = np.random.default_rng(seed)
    names = [f"{c + 1:03d}.Bird_{c}" for c in range(num_classes)]
    lines = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": [], "classes.txt": []}
    image_id = 0
    for c, name in enumerate(names):
        lines["classes.txt"].append(f"{c + 1} {name}")
        for i in range(per_class):
            image_id += 1
            rel = f"{name}/{name}_{i}.jpg"
            _image(os.path.join(root, "images", rel), c, rng)
            lines["images.txt"].append(f"{image_id} {rel}")
            lines["image_class_labels.txt"].append(f"{image_id} {c + 1}")
            lines["train_test_split.txt"].append(f"{image_id} {int(i % 3 != 0)}")
    for name, rows in lines.items():
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


def image_folder(root: str, per_class: dict = None, num_classes: int = 3, seed: int = 0) -> str:
    """``{train,val,test}/<class>/<n>.jpg``."""
    rng = np.random.default_rng(seed)
    for split, n in (per_class or {"train": 8, "val": 3, "test": 4}).items():
        for c in range(num_classes):
            for i in range(n):
                _image(os.path.join(root, split, EMOTIONS[c], f"{i}.jpg"), c, rng)
    return root


def multilabel_lists(root: str, seed: int = 0) -> str:
    """Multi-label ``{train,test}.csv`` (labels joined by ';') and ``{train,test}.pkl`` (EmotionNet format)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 20), ("test", 8)):
        entries = []
        for i in range(n):
            label = i % 3
            rel = f"images/{split}/{i}.jpg"
            _image(os.path.join(root, rel), label, rng)
            entries.append([rel, [EMOTIONS[label]] + (["outdoor"] if i % 2 else [])])
        _write_csv(os.path.join(root, f"{split}.csv"), [(p, ";".join(labels)) for p, labels in entries])
        with open(os.path.join(root, f"{split}.pkl"), "wb") as f:
            pickle.dump(entries, f)
    return root
