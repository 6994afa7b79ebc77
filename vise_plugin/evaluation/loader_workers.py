"""How many data-loader worker processes a benchmark starts."""

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_workers(configured: int) -> int:
    """``configured`` (``config.benchmark.num_workers``) capped at :func:`usable_cpus`: more workers than
    CPUs only compete for them (and torch warns that the loader may freeze)."""
    return min(int(configured), usable_cpus())
