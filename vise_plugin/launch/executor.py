"""A submitit executor whose request has been checked against the partition, and submissions whose
refusal by SLURM is one line."""

import contextlib
import io
from typing import Any, Dict, Iterator

from vise_plugin.errors import ConfigError, UserError
from vise_plugin.launch.job_folders import job_folder
from vise_plugin.launch.slurm_request import fit_request, query_partition, sbatch_refusal

CLUSTERS = ("slurm", "local")


def make_executor(folder: str, slurm_cfg: Dict[str, Any], params: Dict[str, Any], **executor_args: Any) -> Any:
    """A ``submitit.AutoExecutor`` for jobs whose files go to ``<folder>/<job id>/``.

    Args:
        folder: where the jobs' files go.
        slurm_cfg: ``config.slurm`` as a mapping (``cluster``, ``partition``).
        params: ``update_parameters`` arguments; null ``cpus_per_task``, ``mem_gb`` and ``timeout_min``
            follow the partition (:func:`~vise_plugin.launch.slurm_request.fit_request`).
        executor_args: more ``AutoExecutor`` arguments (``slurm_max_num_timeout``).

    Raises:
        ConfigError: an unknown cluster, or a request the partition's nodes cannot satisfy; raised
            before anything is written.
    """
    import submitit

    cluster = slurm_cfg.get("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise ConfigError(f"config.slurm.cluster={cluster!r}: use slurm or local")
    partition = query_partition(slurm_cfg.get("partition")) if cluster == "slurm" else None
    params = fit_request(params, partition)
    executor = submitit.AutoExecutor(folder=job_folder(folder), cluster=cluster, **executor_args)
    executor.update_parameters(**params)
    return executor


@contextlib.contextmanager
def sbatch_errors(what: str) -> Iterator[None]:
    """Turns SLURM's refusal of a submission into one line with its reason (submitit's own echo of
    sbatch's message is held back)."""
    import submitit

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    except submitit.core.utils.FailedJobError as e:
        raise UserError(f"SLURM refused the {what} job: {sbatch_refusal(e)}") from None
