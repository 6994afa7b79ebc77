"""The folder where a label job keeps its finished steps, so that a rerun continues where it stopped.

::

    plan.json                      the settings and input shards; a rerun must match what its finished steps read
    select/shard_XXXXX.json        a shard's fitting candidates are listed (done marker)
    select/shard_XXXXX.jsonl/.npy  its candidate records and their scores
    model/                         the fitted labeler, selection.json, fit_subset_ids.txt
    assign/shard_XXXXX/            the shard's labelled posts, a small label store
    logs/                          submitit logs

Every entry is written under a temporary name and renamed when complete.
"""

import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from vise_plugin.errors import ConfigError

logger = logging.getLogger(__name__)

#: a plan key that one of two plans does not have
UNSET = "(unset)"
#: one difference between two plans in words: ``(key path, old value, new value) -> "key: old here, new now"``
DescribeChange = Callable[[Tuple[str, ...], Any, Any], str]


def said_change(name: str, old: Any, new: Any) -> str:
    """``seed: 0 here, 1 now`` (values as JSON, strings as they are)."""
    text = [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in (old, new)]
    return f"{name}: {text[0]} here, {text[1]} now"


def describe_change(key: Tuple[str, ...], old: Any, new: Any) -> str:
    """``settings.seed: 0 here, 1 now``."""
    return said_change(".".join(key), old, new)


def plan_differences(old: Any, new: Any, key: Tuple[str, ...] = ()) -> List[Tuple[Tuple[str, ...], Any, Any]]:
    """``(key path, old value, new value)`` of every value that differs between two plans, in key
    order; mappings are compared key by key (:data:`UNSET` for a key one of them lacks), anything else whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new))
            for d in plan_differences(old.get(k, UNSET), new.get(k, UNSET), key + (k,))
        ]
    return [] if old == new else [(key, old, new)]


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

    def finished_steps(self) -> Set[str]:
        """The steps with finished work here: ``select`` (a shard's summary), ``fit`` (the model),
        ``assign`` (a shard's store)."""
        steps = set()
        if any(n.endswith(".json") for n in _names(self.path("select"))):
            steps.add("select")
        if os.path.exists(self.selection):
            steps.add("fit")
        if any(os.path.exists(self.assign_summary(n)) for n in _names(self.path("assign"))):
            steps.add("assign")
        return steps

    def check_plan(
        self, plan: Dict[str, Any], describe: DescribeChange = describe_change, fit_settings: Sequence[str] = ()
    ) -> None:
        """Writes ``plan.json``, or checks an existing one (from an earlier run) against ``plan``.

        A plan that differs replaces the old one when no step has finished work here, or when only
        ``fit_settings`` (keys of ``plan["settings"]`` that the fit step reads and the select step
        does not) differ and no model is fitted yet; otherwise a one-line :class:`ConfigError` names
        each difference (``describe(key path, old, new)``).
        """
        path = self.path("plan.json")
        old = read_json(path)
        new = json.loads(json.dumps(plan))
        if old == new:
            return
        if old is not None:
            changes = plan_differences(old, new)
            finished = self.finished_steps()
            read_only_by_fit = finished <= {"select"} and all(
                k[0] == "settings" and len(k) > 1 and k[1] in fit_settings for k, _, _ in changes
            )
            said = "; ".join(describe(k, o, n) for k, o, n in changes)
            if finished and not read_only_by_fit:
                raise ConfigError(
                    f"{path}: an unfinished label job with other settings is here ({said}); "
                    f"rerun with the same settings to continue it, or delete {self.root}"
                )
            logger.info("%s: no finished step read the settings that changed (%s); they are replaced", path, said)
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


def _names(folder: str) -> List[str]:
    return os.listdir(folder) if os.path.isdir(folder) else []


def read_json(path: str) -> Optional[Any]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
