"""A synthetic engagement world whose images, comments and reactions share hidden factors.

Every post has a hidden emotion (the six UnbiasedEmotion classes) and a scene. The emotion picks
the shape drawn in the image, most words of the comments and the reaction profile; the scene
tints the background and adds its own words. The downstream task classifies the emotion of new
images, so a trunk that learned to predict engagement should transfer to it.
"""

import math
import os
import pickle
from collections import Counter
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
from PIL import Image, ImageDraw

from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.shards import iter_records
from vise_plugin.labels.records import REACTION_TYPES, EngagementRecord, write_records

EMOTIONS = ("anger", "fear", "joy", "love", "sadness", "surprise")
SCENES = ("beach", "city", "home")
WORDS = {
    "anger": "furious unacceptable outrageous disgusting rage hate ridiculous shameful awful terrible mad worst",
    "fear": "scary creepy terrifying frightening nightmare afraid spooky eerie danger shivers horror yikes",
    "joy": "haha lol hilarious funny happy awesome fun laughing brilliant great party yay",
    "love": "adorable gorgeous beautiful lovely cute sweet darling heart perfect stunning precious romantic",
    "sadness": "sorry condolences heartbreaking tragic sad tears miss grief rip crying lonely unfortunate",
    "surprise": "wow whoa unbelievable incredible amazing omg shocking unexpected insane speechless really crazy",
    "beach": "sea sand waves sunset summer ocean",
    "city": "street downtown traffic skyline buildings subway",
    "home": "kitchen sofa family dinner garden cozy",
    "generic": "photo picture post today look time people day share thing",
}
VOCAB = {name: words.split() for name, words in WORDS.items()}
# Mean share of each reaction button (haha, sorry, angry, wow, love) per emotion.
REACTION_PROFILES = {
    "anger": (0.05, 0.15, 0.70, 0.05, 0.05),
    "fear": (0.05, 0.45, 0.10, 0.35, 0.05),
    "joy": (0.65, 0.02, 0.03, 0.10, 0.20),
    "love": (0.10, 0.02, 0.02, 0.11, 0.75),
    "sadness": (0.02, 0.80, 0.08, 0.05, 0.05),
    "surprise": (0.10, 0.05, 0.05, 0.70, 0.10),
}
SCENE_TINTS = {"beach": (200, 180, 120), "city": (110, 110, 130), "home": (150, 110, 90)}


def _shape_points(emotion: str, cx: float, cy: float, r: float, angle: float) -> List[tuple]:
    def ring(n, radii):
        return [
            (
                cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / n),
                cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / n),
            )
            for i in range(n)
        ]

    if emotion == "anger":
        return ring(3, [r])
    if emotion == "fear":
        return ring(8, [r, r * 0.3])  # four-pointed star
    if emotion == "surprise":
        return ring(10, [r, r * 0.45])  # five-pointed star
    if emotion == "love":
        return ring(4, [r])  # diamond
    return []


def draw_image(
    emotion: str, scene: str, rng: np.random.Generator, size: int = 32, render: bool = True
) -> Optional[Image.Image]:
    """A ``size`` x ``size`` RGB picture: scene-tinted noisy background, clutter, one emotion shape.
    ``render=False`` draws the same numbers from ``rng`` and returns None (no picture is painted)."""
    s = 2 * size
    tint = np.array(SCENE_TINTS[scene]) + rng.normal(0, 25, 3)
    noise = rng.normal(0, 30, (s, s, 3))
    blobs = []
    for _ in range(rng.integers(1, 4)):  # clutter blobs
        x, y, w = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(3, 9)
        blobs.append(([x - w, y - w * rng.uniform(0.5, 1.5), x + w, y + w], tuple(rng.integers(0, 256, 3).tolist())))
    r = rng.uniform(0.22, 0.36) * s
    cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
    color = tuple(rng.integers(0, 256, 3).tolist())
    angle = rng.uniform(0, 2 * math.pi)
    if not render:
        return None
    image = Image.fromarray(np.clip(tint + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for box, fill in blobs:
        draw.ellipse(box, fill=fill)
    if emotion == "joy":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif emotion == "sadness":  # horizontal bars
        for k in range(3):
            y0 = cy - r + k * 0.8 * r
            draw.rectangle([cx - r, y0, cx + r, y0 + 0.4 * r], fill=color)
    else:
        draw.polygon(_shape_points(emotion, cx, cy, r, angle), fill=color)
    return image.resize((size, size), Image.BILINEAR)


def make_comment(emotion: str, scene: str, rng: np.random.Generator) -> str:
    words = []
    for _ in range(rng.integers(3, 9)):
        u = rng.random()
        if u < 0.5:
            pool = VOCAB[emotion]
        elif u < 0.65:
            pool = VOCAB[scene]
        elif u < 0.85:
            pool = VOCAB["generic"]
        else:
            pool = VOCAB[EMOTIONS[rng.integers(len(EMOTIONS))]]
        words.append(pool[rng.integers(len(pool))])
    return " ".join(words)


def make_reactions(emotion: str, rng: np.random.Generator) -> Dict[str, int]:
    if rng.random() < 0.1:
        return {}
    total = int(rng.lognormal(3.0, 1.0)) + 1
    shares = rng.dirichlet(np.array(REACTION_PROFILES[emotion]) * 20)
    counts = rng.multinomial(total, shares)
    return {name: int(c) for name, c in zip(REACTION_TYPES, counts)}


def generate_posts(folder: str, num_posts: int, seed: int, image_size: int = 32, images: bool = True) -> str:
    """Writes ``posts.jsonl`` and ``images/`` into ``folder``; returns the JSONL path. ``images=False``
    writes the same ``posts.jsonl`` alone (its posts name images that are not written)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images") if images else folder, exist_ok=True)
    records = []
    for i in range(num_posts):
        emotion, scene = EMOTIONS[rng.integers(len(EMOTIONS))], SCENES[rng.integers(len(SCENES))]
        rel = f"images/{i:06d}.jpg"
        image = draw_image(emotion, scene, rng, image_size, render=images)
        if images:
            image.save(os.path.join(folder, rel), quality=95)
        n_comments = 0 if rng.random() < 0.08 else int(rng.integers(1, 16))
        records.append(
            EngagementRecord(
                id=f"post{i:06d}",
                image=rel,
                comments=[make_comment(emotion, scene, rng) for _ in range(n_comments)],
                reactions=make_reactions(emotion, rng),
            )
        )
    path = os.path.join(folder, "posts.jsonl")
    write_records(path, records)
    return path


def generate_downstream(folder: str, per_class: Dict[str, int], seed: int, image_size: int = 32) -> str:
    """Writes an ImageFolder layout ``folder/<split>/<emotion>/<n>.jpg``; returns ``folder``."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for emotion in EMOTIONS:
            os.makedirs(os.path.join(folder, split, emotion), exist_ok=True)
            for j in range(n):
                scene = SCENES[rng.integers(len(SCENES))]
                draw_image(emotion, scene, rng, image_size).save(
                    os.path.join(folder, split, emotion, f"{j:05d}.jpg"), quality=95
                )
    return folder


def write_demo_tags(posts_path: str, max_tags: int = 5, images: Optional[Set[str]] = None) -> Tuple[str, str]:
    """Web tags for the demo world, derived from its comments: each post's ``max_tags`` most
    frequent non-generic comment words (none for a post without comments); only the posts whose
    image is in ``images`` when given (e.g. those of the label store, for a like-for-like comparison).

    Writes, beside ``posts_path``, ``tags_vocab.txt`` (every emotion and scene word) and ``tags.pkl``
    in the EmotionNet release's format ``[[relative_path, [tag ids]], ...]``; returns both paths.
    """
    vocabulary = [w for name, words in VOCAB.items() if name != "generic" for w in words]
    index = {w: i for i, w in enumerate(vocabulary)}
    entries = []
    for record in iter_records(
        posts_path, BadRecordReport()
    ):  # the world writes no bad line; the reader wants a report
        if images is not None and record.image not in images:
            continue
        counts = Counter(w for comment in record.comments for w in comment.split() if w in index)
        entries.append([record.image, [index[w] for w, _ in counts.most_common(max_tags)]])
    folder = os.path.dirname(posts_path)
    vocab_path, list_path = os.path.join(folder, "tags_vocab.txt"), os.path.join(folder, "tags.pkl")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")
    with open(list_path, "wb") as f:
        pickle.dump(entries, f, protocol=2)
    return list_path, vocab_path
