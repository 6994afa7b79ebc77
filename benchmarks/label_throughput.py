"""Comment assignment throughput (comments/s per core) of the project's path versus the naive
scikit-learn path, and peak memory of a whole label job over 1x and 4x the posts.

    python benchmarks/label_throughput.py [--comments 100000] [--k 1000] [--posts 20000]

Both paths use the same fitted TF-IDF vocabulary and the same K-means centroids:
  naive:   TfidfVectorizer.transform + KMeans.predict
  project: TfidfCommentEncoder.transform (one regex pass per chunk, numpy CSR) + Centroids.assign
           (torch embedding_bag over centroid columns)
Each runs on one thread, so comments/s is per core. The last line is ``ratio: <project/naive>``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def synthetic_comments(n: int, seed: int, vocab_size: int = 30_000):
    """Comments of 2-15 words drawn from a Zipf-like vocabulary, with punctuation and emoji."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words_rng = np.random.default_rng(12345)  # the same vocabulary for every call
    words = ["".join(words_rng.choice(letters, size=words_rng.integers(3, 9))) for _ in range(vocab_size)]
    p = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    p /= p.sum()
    lengths = rng.integers(2, 16, size=n)
    tokens = rng.choice(vocab_size, size=int(lengths.sum()), p=p)
    tails = ["!", "!!", " :)", ".", "", " 😍"]
    out, start = [], 0
    for i, length in enumerate(lengths):
        out.append(" ".join(words[t] for t in tokens[start : start + length]) + tails[i % len(tails)])
        start += length
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss, not inherited from a parent)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024


def throughput(args) -> float:
    import torch
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    from vise_plugin.labels import Centroids, TfidfCommentEncoder

    fit = synthetic_comments(args.fit_comments, seed=0)
    test = synthetic_comments(args.comments, seed=1)
    encoder = TfidfCommentEncoder(max_features=100_000, min_df=2, stop_words="english", sublinear_tf=True).fit(fit)
    km = MiniBatchKMeans(n_clusters=args.k, random_state=0, batch_size=4096, n_init=1, max_iter=20)
    km.fit(encoder.transform(fit))
    centroids = Centroids(km.cluster_centers_)
    print(f"corpus: {len(test)} comments, vocabulary {encoder.dim} terms, k={args.k}")
    torch.set_num_threads(1)
    chunk = args.chunk
    with threadpool_limits(1):
        t0 = time.perf_counter()
        naive = np.concatenate(
            [km.predict(encoder.vectorizer.transform(test[i : i + chunk])) for i in range(0, len(test), chunk)]
        )
        t1 = time.perf_counter()
        ours = np.concatenate(
            [centroids.assign(encoder.transform(test[i : i + chunk])) for i in range(0, len(test), chunk)]
        )
        t2 = time.perf_counter()
    naive_rate, ours_rate = len(test) / (t1 - t0), len(test) / (t2 - t1)
    print(f"naive scikit-learn (transform + KMeans.predict): {naive_rate:,.0f} comments/s per core")
    print(f"project (fast TF-IDF + embedding_bag assign):    {ours_rate:,.0f} comments/s per core")
    print(
        f"same cluster as KMeans.predict: {100 * np.mean(naive == ours):.2f}% of comments "
        "(the rest are float near-ties)"
    )
    print(f"peak RSS of this process: {peak_rss_mb():,.0f} MB")
    return ours_rate / naive_rate


def write_posts(path: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    comments = synthetic_comments(n * 10, seed)
    with open(path, "w") as f:
        for i in range(n):
            counts = rng.poisson(3, size=5).tolist()
            f.write(
                json.dumps(
                    {
                        "id": f"p{seed}_{i}",
                        "image": f"{i}.jpg",
                        "comments": comments[10 * i : 10 * i + 10],
                        "reactions": dict(zip(["haha", "sorry", "angry", "wow", "love"], counts)),
                    }
                )
                + "\n"
            )


JOB = """
import sys, time
sys.path.insert(0, {root!r})
from vise_plugin.labels.job import LabelPipeline, LabelSettings
from vise_plugin.launch import JobRunner
settings = LabelSettings(work_dir={out!r} + ".work", comments={{"k": 200, "tfidf": {{"max_features": 20000}}}},
                         reactions={{"k": 16}}, fit_fraction=0.1, fit_max_posts=2000, chunk_size=2000)
t = time.perf_counter()
LabelPipeline(settings, JobRunner(1), report=False).run({posts!r}, {out!r})
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(int(hwm) / 1024, time.perf_counter() - t)
"""


def job_rss(tmp: str, posts: int) -> tuple:
    path = os.path.join(tmp, f"posts_{posts}.jsonl")
    write_posts(path, posts, seed=posts)
    out = os.path.join(tmp, f"labels_{posts}")
    proc = subprocess.run(
        [sys.executable, "-c", JOB.format(root=ROOT, out=out, posts=path)], capture_output=True, text=True, check=True
    )
    rss, seconds = map(float, proc.stdout.split()[-2:])
    return rss, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--fit-comments", type=int, default=60_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=20_000, help="comments per transform/assign call")
    parser.add_argument("--posts", type=int, default=20_000, help="posts of the 1x label job (10 comments each)")
    args = parser.parse_args()
    ratio = throughput(args)
    with tempfile.TemporaryDirectory() as tmp:
        small, small_s = job_rss(tmp, args.posts)
        large, large_s = job_rss(tmp, 4 * args.posts)
    print(
        f"label job peak RSS: {small:,.0f} MB for {args.posts:,} posts ({small_s:.1f} s), "
        f"{large:,.0f} MB for {4 * args.posts:,} posts ({large_s:.1f} s): growth {100 * (large / small - 1):+.1f}%"
    )
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
