import os

from vise_plugin.demo.world import EMOTIONS, VOCAB, generate_downstream, generate_posts
from vise_plugin.labels.job import BadRecordReport, iter_records


def test_world_is_deterministic_and_complete(tmp_path):
    a = [r for r in iter_records(generate_posts(str(tmp_path / "a"), 30, seed=5), BadRecordReport())]
    b = [r for r in iter_records(generate_posts(str(tmp_path / "b"), 30, seed=5), BadRecordReport())]
    assert [r.to_json() for r in a] == [r.to_json() for r in b]
    assert all(os.path.exists(tmp_path / "a" / r.image) for r in a)


def generate_records(tmp_path):
    return [r for r in iter_records(generate_posts(str(tmp_path / "c"), 200, seed=0), BadRecordReport())]


def test_comments_carry_the_emotion_of_the_post(tmp_path):
    records = generate_records(tmp_path)
    emotion_words = {w: e for e in EMOTIONS for w in VOCAB[e]}
    assert any(not r.comments for r in records) and any(not r.reactions for r in records)
    dominant_share = []
    for r in records:
        counts = {}
        for c in r.comments:
            for w in c.split():
                if w in emotion_words:
                    counts[emotion_words[w]] = counts.get(emotion_words[w], 0) + 1
        if sum(counts.values()) >= 10:
            dominant_share.append(max(counts.values()) / sum(counts.values()))
    assert sum(dominant_share) / len(dominant_share) > 0.6  # one emotion dominates each post's comments


def test_downstream_layout(tmp_path):
    root = generate_downstream(str(tmp_path / "ds"), {"train": 2, "test": 1}, seed=0)
    assert sorted(os.listdir(os.path.join(root, "train"))) == sorted(EMOTIONS)
    assert len(os.listdir(os.path.join(root, "test", "joy"))) == 1
