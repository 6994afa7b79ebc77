"""What a job asks SLURM for, checked against what the partition has before anything is submitted.

A request no node of the partition can satisfy would stay PENDING (``PartitionConfig``) forever, and
one SLURM refuses at once ends in submitit's traceback; both become one line naming the key to change.
``config.slurm.cpus_per_task``, ``mem_gb`` and ``time_minutes`` left null follow the partition.
"""

import dataclasses
import re
import subprocess
from typing import Any, Dict, List, Optional

from vise_plugin.errors import ConfigError, UserError

DEFAULT_CPUS_PER_TASK = 8  # data-loading workers of one training process, when the node has that many
DEFAULT_TIME_MINUTES = 4320  # where the partition has no time limit (or there is no partition: local executor)


@dataclasses.dataclass(frozen=True)
class NodeGroup:
    """Nodes of a partition alike in size, as one ``sinfo`` line gives them."""

    count: int
    cpus: int
    mem_mb: int


@dataclasses.dataclass(frozen=True)
class Partition:
    """A SLURM partition's nodes and time limit (``sinfo``)."""

    name: str
    groups: List[NodeGroup]
    time_limit_min: Optional[int]  # None: no limit

    @property
    def max_cpus(self) -> int:
        return max(g.cpus for g in self.groups)

    @property
    def max_mem_mb(self) -> int:
        return max(g.mem_mb for g in self.groups)

    def nodes_with(self, cpus: int, mem_mb: int) -> int:
        """How many nodes have at least ``cpus`` CPUs and ``mem_mb`` MB."""
        return sum(g.count for g in self.groups if g.cpus >= cpus and g.mem_mb >= mem_mb)


def _number(text: str) -> int:
    match = re.match(r"\d+", text.strip())
    return int(match.group()) if match else 0


def parse_time_limit(text: str) -> Optional[int]:
    """SLURM's ``[days-]hours:minutes:seconds`` (or ``minutes``, ``infinite``) -> minutes; None for no limit."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts[-3:]
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def parse_sinfo(text: str, partition: Optional[str]) -> Optional[Partition]:
    """``sinfo -h -o '%P|%D|%c|%m|%l'`` output -> the named partition, or the default one (``*``) for None."""
    rows = [line.split("|") for line in text.splitlines() if line.count("|") == 4]
    if partition is None:
        partition = next((r[0].rstrip("*") for r in rows if r[0].endswith("*")), None)
        if partition is None:
            return None
    rows = [r for r in rows if r[0].rstrip("*") == partition]
    if not rows:
        return None
    groups = [NodeGroup(_number(r[1]), _number(r[2]), _number(r[3])) for r in rows]
    limits = [parse_time_limit(r[4]) for r in rows]
    return Partition(partition, groups, None if None in limits else max(limits))


def query_partition(partition: Optional[str]) -> Partition:
    """The partition as ``sinfo`` sees it now.

    Raises:
        UserError: ``sinfo`` is missing or fails, or the partition does not exist (one line).
    """
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P|%D|%c|%m|%l"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(
            f"config.slurm.use_slurm=true but sinfo cannot be run ({e}); submit from a SLURM login "
            "node, or use config.slurm.cluster=local"
        ) from None
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"sinfo failed ({reason}): is the SLURM controller reachable from here?")
    found = parse_sinfo(proc.stdout, partition)
    if found is None:
        names = sorted({line.split("|")[0].rstrip("*") for line in proc.stdout.splitlines() if "|" in line})
        raise ConfigError(
            f"config.slurm.partition={partition!r}: "
            + (
                f"no such partition (there are: {', '.join(names)})"
                if partition
                else "the cluster has no default partition; name one"
            )
        )
    return found


def fit_request(params: Dict[str, Any], partition: Optional[Partition]) -> Dict[str, Any]:
    """Fills the null ``cpus_per_task``, ``mem_gb`` and ``timeout_min`` of submitit's parameters from the
    partition and checks that the request fits its nodes.

    Args:
        params: ``AutoExecutor.update_parameters`` arguments; ``nodes`` and ``tasks_per_node`` default to 1.
        partition: from :func:`query_partition`; None (submitit's local executor) checks nothing.

    Returns:
        the parameters with no null values (null memory is left out: SLURM's default applies).

    Raises:
        ConfigError: one line naming the key to change and what the partition has.
    """
    params = dict(params)
    nodes, tasks = int(params.get("nodes", 1)), int(params.get("tasks_per_node", 1))
    if partition is None:
        params["cpus_per_task"] = params.get("cpus_per_task") or 1
        params["timeout_min"] = params.get("timeout_min") or DEFAULT_TIME_MINUTES
        if params.get("mem_gb") is None:
            params.pop("mem_gb", None)
        return params
    where = f"partition {partition.name}"
    if params.get("cpus_per_task") is None:
        params["cpus_per_task"] = max(1, min(DEFAULT_CPUS_PER_TASK, partition.max_cpus // tasks))
    cpus = int(params["cpus_per_task"]) * tasks
    if cpus > partition.max_cpus:
        raise ConfigError(
            f"config.slurm.cpus_per_task={params['cpus_per_task']} x {tasks} task(s) per node asks for {cpus} CPUs, "
            f"but the nodes of {where} have at most {partition.max_cpus}: set config.slurm.cpus_per_task="
            f"{max(partition.max_cpus // tasks, 1)} (or null) or lower config.distributed.num_proc_per_node"
        )
    mem_mb = 0
    if params.get("mem_gb") is None:
        params.pop("mem_gb", None)
    else:
        mem_mb = int(float(params["mem_gb"]) * 1024)
        if mem_mb > partition.max_mem_mb:
            raise ConfigError(
                f"config.slurm.mem_gb={params['mem_gb']} asks for {mem_mb} MB per node, but the nodes of {where} "
                f"have at most {partition.max_mem_mb} MB: set config.slurm.mem_gb={partition.max_mem_mb // 1024} "
                "or less, or null for SLURM's default"
            )
    fitting = partition.nodes_with(cpus, mem_mb)
    if nodes > fitting:
        raise ConfigError(
            f"config.distributed.num_nodes={nodes}, but {where} has {fitting} node(s) with {cpus} CPUs"
            + (f" and {mem_mb} MB" if mem_mb else "")
            + f": set config.distributed.num_nodes={max(fitting, 1)} "
            "or ask for less per node"
        )
    limit = partition.time_limit_min
    if params.get("timeout_min") is None:
        params["timeout_min"] = limit or DEFAULT_TIME_MINUTES
    elif limit is not None and int(params["timeout_min"]) > limit:
        raise ConfigError(
            f"config.slurm.time_minutes={params['timeout_min']} is over the {limit} minutes {where} "
            f"allows: set config.slurm.time_minutes={limit} or less (or null); the job requeues itself "
            "at the limit"
        )
    return params


def sbatch_refusal(error: BaseException) -> str:
    """SLURM's own reason from a failed submission (``sbatch: error: ...``), as one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [type(error).__name__])[-1]
