"""Training curves as a picture: loss (total and per task), learning rate and images/s of one or more
run folders, read from their ``stdout.json``."""

import json
import os
from typing import Dict, List, Sequence

from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.process_state import keeps_process_state

STDOUT_JSON = "stdout.json"
CURVES_PNG = "training_curves.png"


def read_log_records(run_dir: str) -> List[Dict]:
    """The JSON lines of ``<run_dir>/stdout.json`` (one per logged iteration), in order."""
    path = os.path.join(run_dir, STDOUT_JSON)
    if not g_pathmgr.exists(path):
        raise InputError(f"{path}: not found; is {run_dir} a pretraining run folder?")
    with g_pathmgr.open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@keeps_process_state
def plot_training_curves(run_dirs: Sequence[str], output: str, labels: Sequence[str] = ()) -> str:
    """Writes a PNG with three panels (loss, lr, images/s against iteration), one colour per run;
    the loss panel shows the total as a solid line and each task's loss dashed. Returns ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(label, read_log_records(d)) for label, d in zip(list(labels) + [None] * len(run_dirs), run_dirs)]
    fig, (ax_loss, ax_lr, ax_speed) = plt.subplots(1, 3, figsize=(15, 4))
    for i, ((label, records), run_dir) in enumerate(zip(runs, run_dirs)):
        color = f"C{i % 10}"
        name = label or os.path.basename(os.path.normpath(run_dir))
        it = [r["iteration"] for r in records]
        ax_loss.plot(it, [r["loss"] for r in records], color=color, label=name)
        for style, task in zip(("--", ":", "-."), sorted({k for r in records for k in r if k.startswith("loss_")})):
            ax_loss.plot(
                it,
                [r.get(task, float("nan")) for r in records],
                style,
                color=color,
                linewidth=1,
                label=f"{name}: {task[len('loss_') :]}",
            )
        ax_lr.plot(it, [r["lr"] for r in records], color=color, label=name)
        ax_speed.plot(it, [r["images_per_sec"] for r in records], color=color, label=name)
    for ax, title in ((ax_loss, "loss"), (ax_lr, "learning rate"), (ax_speed, "images/s")):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    with g_pathmgr.open(output, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return output
