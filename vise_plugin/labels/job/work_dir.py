"""The folder where a label job keeps its finished steps, so that a rerun continues where it stopped.

::

    plan.json                      the settings and input shards; a rerun must match it
    select/shard_XXXXX.json        a shard's fitting candidates are listed (done marker)
    select/shard_XXXXX.jsonl/.npy  its candidate records and their scores
    model/                         the fitted labeler, selection.json, fit_subset_ids.txt
    assign/shard_XXXXX/            the shard's labelled posts, a small label store
    logs/                          submitit logs

Every entry is written under a temporary name and renamed when complete.
"""

import json
import os
from typing import Any, Dict, Optional

from vise_plugin.errors import ConfigError


class WorkDir:
    def __init__(self, root: str):
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def select_summary(self, shard_name: str) -> str:
        return self.path("select", shard_name + ".json")

    def assign_store(self, shard_name: str) -> str:
        return self.path("assign", shard_name)

    def assign_summary(self, shard_name: str) -> str:
        return os.path.join(self.assign_store(shard_name), "meta.json")

    @property
    def model(self) -> str:
        return self.path("model")

    @property
    def selection(self) -> str:
        """``model/selection.json``: written last by the fit step, so its presence means the model is complete."""
        return os.path.join(self.model, "selection.json")

    def check_plan(self, plan: Dict[str, Any]) -> None:
        """Writes ``plan.json``, or checks that an existing one (from an earlier run) is the same."""
        path = self.path("plan.json")
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if old != json.loads(json.dumps(plan)):
                changed = sorted(k for k in set(old) | set(plan) if old.get(k) != json.loads(json.dumps(plan.get(k))))
                raise ConfigError(f"{path}: an unfinished label job with other settings ({', '.join(changed)}) is here; "
                                  f"rerun with the same settings to continue it, or delete {self.root}")
            return
        for sub in ("select", "assign", "logs"):
            os.makedirs(self.path(sub), exist_ok=True)
        write_json_atomic(path, plan)


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str) -> Optional[Any]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
