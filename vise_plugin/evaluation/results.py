"""Benchmark results: ``metrics.json`` lines and rows of a markdown results table."""

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from iopath.common.file_io import g_pathmgr

TABLE_HEADER = ["benchmark", "protocol", "trunk", "weights", "result", "folds", "run folder"]


def summarize(folds: List[Dict], metrics: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """``{"<split>_<m>": {"mean", "std"}}`` over folds (std with ddof=0; 0 for one fold)."""
    summary = {}
    for split in ("val", "test"):
        for m in metrics:
            values = np.array([f[f"{split}_{m}"] for f in folds])
            summary[f"{split}_{m}"] = {"mean": float(values.mean()), "std": float(values.std())}
    return summary


def format_score(mean: float, metric: str, std: Optional[float] = None, decimals: int = 2) -> str:
    """A score as the tables print it: ``71.23``, ``71.23 ± 1.05`` with a std over several splits; a ROC
    AUC (in [0, 1]) always with 4 decimals, other metrics (percentages) with ``decimals``."""
    digits = 4 if metric == "roc_auc" else decimals
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def format_result(summary: Dict[str, Dict[str, float]], metrics: Sequence[str], split_name: str, num_folds: int) -> str:
    """E.g. ``test acc 71.23 ± 1.05`` or ``dev roc_auc 0.6123, acc 58.20``."""
    parts = []
    for m in metrics:
        s = summary[f"test_{m}"]
        parts.append(f"{m} {format_score(s['mean'], m, s['std'] if num_folds > 1 else None)}")
    return f"{split_name} " + ", ".join(parts)


def write_sweep_table(path: str, folds: List[Dict], metrics: Sequence[str]) -> str:
    """The fine-tune sweep's sensitivity table: every grid point (trunk lr, head lr, epochs) with its val
    and test metrics (mean over folds) and how many folds chose it."""
    points = folds[0]["sweep"]
    names = [f"{split} {m}" for split in ("val", "test") for m in metrics]
    lines = ["| trunk lr | head lr | epochs | " + " | ".join(names) + " | chosen in |", "|---" * (4 + len(names)) + "|"]
    for i, point in enumerate(points):
        values = [np.mean([f["sweep"][i][f"{split}_{m}"] for f in folds]) for split in ("val", "test") for m in metrics]
        chosen = sum(all(f[k] == point[k] for k in ("trunk_lr", "head_lr", "epochs")) for f in folds)
        lines.append(
            f"| {point['trunk_lr']:g} | {point['head_lr']:g} | {point['epochs']} | "
            + " | ".join(format_score(v, m) for v, m in zip(values, metrics * 2))
            + f" | {chosen}/{len(folds)} folds |"
        )
    with g_pathmgr.open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_folder(output: str, benchmark: str) -> str:
    """The run folder of benchmark ``linear/cub_r50`` in a suite's ``output``: ``<output>/linear_cub_r50``."""
    return os.path.join(output, benchmark.replace("/", "_"))


def last_metrics(run_dir: str) -> Optional[Dict]:
    """The last :func:`append_metrics` record of ``<run_dir>/metrics.json``; None when there is none."""
    path = os.path.join(run_dir, "metrics.json")
    if not g_pathmgr.exists(path):
        return None
    with g_pathmgr.open(path) as f:
        lines = [line for line in f if line.strip()]
    return json.loads(lines[-1]) if lines else None


def append_metrics(path: str, record: Dict) -> None:
    """One JSON line appended to ``metrics.json`` (VISSL's habit: one line per evaluation)."""
    with g_pathmgr.open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def append_table_row(path: str, row: Sequence[str]) -> None:
    """Appends a row to the markdown table at ``path``, writing the header first when the file is new."""
    if os.path.dirname(path):
        g_pathmgr.mkdirs(os.path.dirname(path))
    new = not g_pathmgr.exists(path)
    with g_pathmgr.open(path, "a") as f:
        if new:
            f.write("| " + " | ".join(TABLE_HEADER) + " |\n" + "|---" * len(TABLE_HEADER) + "|\n")
        f.write("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |\n")
