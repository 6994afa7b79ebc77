"""Several named weights over the same benchmarks, side by side (the layout of Fig. 3): one markdown
table (rows: weights; columns: benchmarks; mean ± std where a task has several splits) with the
hyper-parameters chosen in each cell, and one PNG bar chart."""

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import yaml
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import ConfigError
from vise_plugin.evaluation.results import format_score, last_metrics, run_folder

TABLE = "comparison.md"
CHART = "comparison.png"


def parse_weights(value: str) -> Dict[str, Dict[str, Optional[str]]]:
    """``{vise: runs/x/checkpoint.torch, clip: {weights: clip.pt, trunk: clip_rn50}, random: null}`` ->
    ``{name: {"weights": path or None, "trunk": trunk name or None}}`` (None: the shared
    ``config.model.trunk``)."""
    example = "weights={vise: runs/vise/checkpoint.torch, clip: {weights: clip.pt, trunk: clip_rn50}, random: null}"
    try:
        weights = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"weights={value}: not a mapping of names to files ({str(e).splitlines()[0]})") from None
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"weights={value}: give a mapping of names to files, e.g. {example}")
    parsed = {}
    for name, entry in weights.items():
        if not isinstance(entry, dict):
            entry = {"weights": entry}
        if set(entry) - {"weights", "trunk"}:
            raise ConfigError(
                f"weights.{name}: unknown keys {sorted(set(entry) - {'weights', 'trunk'})}; "
                f"an entry is a file, null or {{weights: <file>, trunk: <name>}}"
            )
        path, trunk = entry.get("weights"), entry.get("trunk")
        parsed[str(name)] = {
            "weights": None if path in (None, "null", "") else str(path),
            "trunk": None if trunk is None else str(trunk),
        }
    return parsed


def _chosen(record: Mapping[str, Any]) -> str:
    """The hyper-parameters model selection chose, over the folds (``lr 0.1, wd 0.0001``; ``/`` between
    values that differ across folds)."""
    keys = [
        k
        for k in ("lr", "weight_decay", "trunk_lr", "head_lr", "epochs", "best_epoch")
        if all(k in f for f in record["folds"])
    ]
    names = {"weight_decay": "wd", "best_epoch": "epoch"}
    parts = []
    for k in keys:
        values = sorted({f[k] for f in record["folds"]}, key=float)
        parts.append(f"{names.get(k, k)} {'/'.join(f'{v:g}' for v in values)}")
    return ", ".join(parts)


def comparison(output: str, weights: Sequence[str], benchmarks: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """``{weights: {benchmark: record}}`` of the runs in ``<output>/<weights>/<benchmark>``."""
    return {w: {b: last_metrics(run_folder(os.path.join(output, w), b)) for b in benchmarks} for w in weights}


def write_comparison(output: str, weights: Sequence[str], benchmarks: Sequence[str]) -> List[str]:
    """Writes ``<output>/comparison.md`` and ``comparison.png``; returns their paths."""
    results = comparison(output, weights, benchmarks)
    header = "| weights | " + " | ".join(benchmarks) + " |\n" + "|---" * (len(benchmarks) + 1) + "|\n"
    scores, chosen = header, header
    means, stds = np.full((len(weights), len(benchmarks)), np.nan), np.zeros((len(weights), len(benchmarks)))
    for i, w in enumerate(weights):
        cells, settings = [], []
        for j, b in enumerate(benchmarks):
            record = results[w][b]
            if record is None:
                cells.append("-")
                settings.append("-")
                continue
            metric = record["metrics"][0]
            s = record["summary"][f"test_{metric}"]
            cells.append(format_score(s["mean"], metric, s["std"] if len(record["folds"]) > 1 else None, decimals=1))
            settings.append(_chosen(record))
            means[i, j], stds[i, j] = s["mean"], s["std"]
        scores += f"| {w} | " + " | ".join(cells) + " |\n"
        chosen += f"| {w} | " + " | ".join(settings) + " |\n"
    metrics = [next((r["metrics"][0] for r in (results[w][b] for w in weights) if r), "?") for b in benchmarks]
    table = os.path.join(output, TABLE)
    with g_pathmgr.open(table, "w") as f:
        f.write(f"Test {', '.join(f'{b}: {m}' for b, m in zip(benchmarks, metrics))}; mean ± std over splits.\n\n")
        f.write(scores + "\nChosen on val:\n\n" + chosen)
    return [table, _chart(os.path.join(output, CHART), weights, benchmarks, means, stds)]


def _chart(path: str, weights: Sequence[str], benchmarks: Sequence[str], means: np.ndarray, stds: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(benchmarks) * max(1, len(weights) / 3)), 4))
    width = 0.8 / len(weights)
    x = np.arange(len(benchmarks))
    for i, w in enumerate(weights):
        ax.bar(
            x + (i - (len(weights) - 1) / 2) * width,
            np.nan_to_num(means[i]),
            width,
            label=w,
            yerr=stds[i] if stds[i].any() else None,
            capsize=3,
        )  # no bars where every task has one split
    ax.set_xticks(x)
    ax.set_xticklabels(benchmarks, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("test score (first metric of each task)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with g_pathmgr.open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return path
