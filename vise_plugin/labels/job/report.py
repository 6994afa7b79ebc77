"""The cluster report written beside a label store: size histograms (PNG) and clusters.md."""

import os
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vise_plugin.labels.labeler import EngagementLabeler  # noqa: E402


def plot_cluster_sizes(sizes: np.ndarray, path: str, title: str, unit: str) -> None:
    """Two panels: sizes by rank (log scale) and the histogram of sizes. ``sizes``: ``(K,)`` counts."""
    fig, (by_rank, hist) = plt.subplots(1, 2, figsize=(11, 3.8))
    ordered = np.sort(sizes)[::-1]
    by_rank.bar(np.arange(len(ordered)), np.maximum(ordered, 0.5), width=1.0, color="#3b6ea8")
    by_rank.set_yscale("log")
    by_rank.set_xlabel("cluster rank")
    by_rank.set_ylabel(unit)
    by_rank.set_title(f"{title}: sizes by rank (k={len(sizes)})")
    hist.hist(sizes, bins=min(50, max(len(sizes) // 2, 5)), color="#c8553d")
    hist.set_xlabel(unit)
    hist.set_ylabel("clusters")
    empty = int((sizes == 0).sum())
    hist.set_title(f"histogram; {empty} empty cluster(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _cell(items: Optional[List[str]]) -> str:
    return ", ".join(s.replace("|", "\\|").replace("\n", " ") for s in items or []) or "–"


def write_cluster_report(
    folder: str, labeler: EngagementLabeler, comment_sizes: np.ndarray, reaction_sizes: np.ndarray, top_terms: int = 8
) -> None:
    """Writes ``comments_sizes.png``, ``reactions_sizes.png`` and ``clusters.md`` into ``folder``.

    ``comment_sizes``: ``(Kc,)`` comment labels per cluster over the store; ``reaction_sizes``:
    ``(Kr,)`` posts per reaction cluster.
    """
    os.makedirs(folder, exist_ok=True)
    plot_cluster_sizes(comment_sizes, os.path.join(folder, "comments_sizes.png"), "comment clusters", "comments")
    plot_cluster_sizes(reaction_sizes, os.path.join(folder, "reactions_sizes.png"), "reaction clusters", "posts")
    terms = labeler.comment_centroid_terms(top_terms)
    total_c, total_r = max(int(comment_sizes.sum()), 1), max(int(reaction_sizes.sum()), 1)
    lines = [
        "# Clusters of this label store",
        "",
        "![comment cluster sizes](comments_sizes.png)",
        "",
        "![reaction cluster sizes](reactions_sizes.png)",
        "",
        f"## Comment clusters (k={len(comment_sizes)}, {labeler.comment_encoder.kind})",
        "",
        "Largest first. Size counts comment labels over the labelled posts; examples are the fitting "
        "comments closest to the centroid.",
        "",
        "| cluster | comments | share | top terms | example comments |",
        "|---:|---:|---:|---|---|",
    ]
    for c in np.argsort(-comment_sizes, kind="stable"):
        lines.append(
            f"| {c} | {int(comment_sizes[c])} | {100 * comment_sizes[c] / total_c:.2f}% | "
            f"{_cell(terms[c] if terms else None)} | {_cell(labeler.examples.get(str(c)))} |"
        )
    lines += [
        "",
        f"## Reaction clusters (k={len(reaction_sizes)})",
        "",
        "The centroid is the L2-normalised reaction profile; the strongest reaction types are listed.",
        "",
        "| cluster | posts | share | profile |",
        "|---:|---:|---:|---|",
    ]
    centroids = labeler.reaction_centroids.centroids
    for c in np.argsort(-reaction_sizes, kind="stable"):
        order = np.argsort(-centroids[c])[:3]
        profile = ", ".join(
            f"{labeler.reaction_types[j]} {centroids[c, j]:.2f}" for j in order if centroids[c, j] > 0.05
        )
        lines.append(f"| {c} | {int(reaction_sizes[c])} | {100 * reaction_sizes[c] / total_r:.2f}% | {profile} |")
    with open(os.path.join(folder, "clusters.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
