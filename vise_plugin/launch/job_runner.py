"""Running a list of independent jobs here (in-process or a process pool) or as a submitit array job.

What runs is a plain function; where it runs is config: ``config.slurm.use_slurm`` sends the jobs
to SLURM through submitit (``config.slurm.cluster=local`` uses submitit's local executor, which
runs the same job files as local processes), otherwise ``num_workers`` processes share them.
"""

import concurrent.futures as cf
import logging
import multiprocessing
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from vise_plugin.config.imports import import_modules
from vise_plugin.errors import ConfigError, InputError, UserError
from vise_plugin.launch.executor import make_executor, sbatch_errors
from vise_plugin.launch.job_folders import remove_placeholder_folder
from vise_plugin.launch.job_follower import JobFollower, Outcome

logger = logging.getLogger(__name__)


class JobFailure:
    """What a job returns instead of raising a :class:`UserError`, so the driver can print it as one line."""

    def __init__(self, error: UserError):
        self.message = str(error)
        self.error_class = next(c for c in (ConfigError, InputError, UserError) if isinstance(error, c))

    def raise_here(self) -> None:
        raise self.error_class(self.message)


def _call(fn: Callable, args: Tuple, imports: Sequence[str] = ()) -> Any:
    try:
        import_modules(imports)  # a worker process or SLURM job sees the user's registered parts too
        return fn(*args)
    except UserError as e:
        return JobFailure(e)


def _submitit_job(fn: Callable, args: Tuple, imports: Sequence[str] = ()) -> Any:
    """:func:`_call` as a submitit job."""
    remove_placeholder_folder()
    return _call(fn, args, imports)


def _optional_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def slurm_parameters(slurm_cfg: Dict[str, Any], name: str) -> Dict[str, Any]:
    """``config.slurm`` -> keyword arguments of ``submitit.AutoExecutor.update_parameters`` (null
    ``timeout_min``, ``mem_gb`` and ``cpus_per_task`` are filled in from the partition by
    :func:`~vise_plugin.launch.executor.make_executor`)."""
    params = {
        "name": f"{slurm_cfg.get('name') or 'vise'}_{name}",
        "timeout_min": _optional_int(slurm_cfg.get("time_minutes")),
        "mem_gb": slurm_cfg.get("mem_gb"),
        "cpus_per_task": _optional_int(slurm_cfg.get("cpus_per_task")),
        "slurm_array_parallelism": int(slurm_cfg.get("array_parallelism", 256)),
    }
    for key in ("partition", "constraint", "comment"):
        if slurm_cfg.get(key):
            params[f"slurm_{key}"] = slurm_cfg[key]
    if slurm_cfg.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(slurm_cfg["additional_parameters"])
    return params


class JobRunner:
    """Runs ``fn(*args)`` for each ``args`` and returns the results in order.

    Args:
        num_workers: local processes (1: in this process).
        slurm: ``config.slurm`` (a mapping); when ``use_slurm`` is true, jobs go through submitit.
        log_folder: submitit's folder for job files and logs.
        imports: modules every job imports before it runs (``config.imports``).
    """

    def __init__(
        self,
        num_workers: int = 1,
        slurm: Optional[Dict[str, Any]] = None,
        log_folder: Optional[str] = None,
        imports: Sequence[str] = (),
    ):
        self.num_workers = max(int(num_workers), 1)
        self.imports = list(imports)
        self.slurm = dict(slurm or {})
        self.log_folder = self.slurm.get("log_folder") or log_folder
        self._pool_executor: Optional[cf.ProcessPoolExecutor] = None

    def __enter__(self) -> "JobRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the worker processes (they are kept between :meth:`map` calls until then)."""
        if self._pool_executor is not None:
            self._pool_executor.shutdown(cancel_futures=True)
            self._pool_executor = None

    @property
    def uses_submitit(self) -> bool:
        return bool(self.slurm.get("use_slurm"))

    def map(self, fn: Callable, jobs: Sequence[Tuple], name: str, unit: str = "shard") -> List[Any]:
        if not jobs:
            return []
        with tqdm(total=len(jobs), desc=name, unit=unit, dynamic_ncols=True) as bar:
            if self.uses_submitit:
                results = self._submitit(fn, jobs, name, bar)
            elif self.num_workers == 1 or len(jobs) == 1:
                results = []
                for args in jobs:
                    results.append(_call(fn, args))
                    bar.update(1)
            else:
                results = self._pool(fn, jobs, bar)
        for result in results:
            if isinstance(result, JobFailure):
                result.raise_here()
        return results

    def _pool(self, fn: Callable, jobs: Sequence[Tuple], bar: tqdm) -> List[Any]:
        results: List[Any] = [None] * len(jobs)
        if self._pool_executor is None:
            context = multiprocessing.get_context("spawn")  # no fork of a process that may hold OpenMP threads
            self._pool_executor = cf.ProcessPoolExecutor(self.num_workers, mp_context=context)
        futures = {self._pool_executor.submit(_call, fn, args, self.imports): i for i, args in enumerate(jobs)}
        for future in cf.as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
        return results

    def _submitit(self, fn: Callable, jobs: Sequence[Tuple], name: str, bar: tqdm) -> List[Any]:
        """The jobs as one array job. A task that ends without a result (killed, its node lost, out of
        time) is submitted again, up to ``config.slurm.max_task_retries`` times; a task whose function
        raised is not."""
        if self.log_folder is None:
            raise ConfigError("config.slurm.log_folder: no folder for submitit's job files")
        executor = make_executor(self.log_folder, self.slurm, slurm_parameters(self.slurm, name))
        with sbatch_errors(name):
            submitted = executor.map_array(_submitit_job, [fn] * len(jobs), list(jobs), [self.imports] * len(jobs))
        logger.info(
            "%s: submitted %d job(s) through submitit (%s), first id %s",
            name,
            len(submitted),
            self.slurm.get("cluster", "slurm"),
            submitted[0].job_id,
        )
        follower = JobFollower(report_every_s=0, poll_s=float(self.slurm.get("poll_s", 2)), say=None)
        for i, job in enumerate(submitted):
            follower.add(str(i), job)
        latest = list(submitted)
        retries = [0] * len(jobs)
        max_retries = int(self.slurm.get("max_task_retries", 1))
        results: List[Any] = [None] * len(jobs)

        def on_end(label: str, outcome: Outcome) -> None:
            i = int(label)
            if outcome.error is None:
                results[i] = outcome.result
                bar.update(1)
            elif outcome.without_result and retries[i] < max_retries:
                retries[i] += 1
                with sbatch_errors(name):
                    latest[i] = executor.submit(_submitit_job, fn, jobs[i], self.imports)
                tqdm.write(
                    f"{name} task {i} (job {outcome.job_id}) {outcome.error}; submitted again as job "
                    f"{latest[i].job_id} (retry {retries[i]} of {max_retries})"
                )
                follower.add(label, latest[i])
            else:
                raise UserError(
                    f"{name} task {i} (job {outcome.job_id}) {outcome.error}; its files: "
                    f"{latest[i].paths.stdout.parent}"
                )

        follower.follow(on_end)
        return results
