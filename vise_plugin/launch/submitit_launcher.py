"""Running an engine (pretraining, a benchmark, a suite) as a SLURM job through submitit.

The job is a :class:`EngineJob`: on every task it sets the variables ``torchrun`` would set
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) from submitit's job
environment and calls the same engine function a plain run calls. When SLURM warns of preemption
or the time limit (USR2), pretraining saves ``checkpoint.torch`` after the current step and the
first task requeues the job; the requeued job resumes from that checkpoint.
"""

import logging
import os
import signal
import zlib
from typing import Any, Callable, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from vise_plugin.config.imports import import_modules
from vise_plugin.errors import ConfigError, UserError
from vise_plugin.launch.executor import make_executor, sbatch_errors
from vise_plugin.launch.job_folders import remove_placeholder_folder
from vise_plugin.launch.job_follower import JobFollower, Outcome
from vise_plugin.launch.job_runner import JobFailure, slurm_parameters
from vise_plugin.launch.node_address import master_address
from vise_plugin.launch.preemption import Preempted, preemption_signal
from vise_plugin.registry import ENGINES

logger = logging.getLogger(__name__)


def rendezvous_port(job_id: str) -> int:
    """A port in [20000, 60000) that every task of a job derives alike from its id."""
    return 20000 + zlib.crc32(str(job_id).encode()) % 40000


def set_distributed_env(env: Any) -> None:
    """``torchrun``'s variables from a ``submitit.JobEnvironment``; ``MASTER_ADDR`` is the first node's
    address (:func:`~vise_plugin.launch.node_address.master_address`)."""
    os.environ.update(
        RANK=str(env.global_rank),
        WORLD_SIZE=str(env.num_tasks),
        LOCAL_RANK=str(env.local_rank),
        LOCAL_WORLD_SIZE=str(env.num_tasks // max(env.num_nodes, 1)),
        MASTER_ADDR=master_address(env.hostnames[0]) if env.num_nodes > 1 else "127.0.0.1",
        MASTER_PORT=str(rendezvous_port(env.job_id)),
    )


class EngineJob:
    """What submitit pickles and runs on every task: ``engine(config)``; the job's result is the
    engine's (a trainer is summarised as a dict).

    Args:
        engine: the engine name (``config.engine``); looked up when the job starts, so the plugin
            is imported on every node.
        config: the composed root config as a plain dict.
    """

    def __init__(self, engine: str, config: Dict[str, Any]):
        self.engine = engine
        self.config = config

    def __call__(self) -> Any:
        import submitit

        remove_placeholder_folder()
        env = submitit.JobEnvironment()
        requeue = signal.getsignal(preemption_signal())  # submitit's checkpoint-and-requeue handler
        try:
            set_distributed_env(env)
            import_modules(self.config["config"].get("imports") or [])  # a node of the job sees the user's parts too
            result = ENGINES.get(self.engine, "config.engine")(OmegaConf.create(self.config))
            return result.summary() if hasattr(result, "summary") else result  # a trainer, as plain values
        except UserError as e:
            logger.error("%s", e)
            return JobFailure(e)
        except Preempted as e:
            logger.warning("%s", e)
            if env.global_rank == 0 and callable(requeue):
                try:
                    requeue(preemption_signal(), None)  # calls self.checkpoint(), requeues, exits
                except submitit.core.utils.UncompletedJobError as stop:  # out of requeues at the time limit
                    limit = self.config["config"]["slurm"]["max_num_timeout"]
                    return JobFailure(
                        UserError(
                            f"{stop} (config.slurm.max_num_timeout={limit}); {e}; submit the "
                            "same command again to resume"
                        )
                    )
            return None

    def checkpoint(self) -> Any:
        """Requeue with the same job: the engine resumes from the run folder's newest checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(EngineJob(self.engine, self.config))


def executor_parameters(cfg: DictConfig, gpu: bool) -> Dict[str, Any]:
    """``config.slurm`` and ``config.distributed`` -> ``AutoExecutor.update_parameters`` arguments."""
    slurm, dist = cfg.slurm, cfg.distributed
    params = slurm_parameters(OmegaConf.to_container(slurm, resolve=True), cfg.engine)
    params.pop("slurm_array_parallelism")
    params.update(
        nodes=int(dist.num_nodes),
        tasks_per_node=int(dist.num_proc_per_node),
        slurm_signal_delay_s=int(slurm.signal_delay_s),
    )
    if gpu:
        params["gpus_per_node"] = int(dist.num_proc_per_node)
    if slurm.setup:
        params["slurm_setup"] = list(slurm.setup)
    return params


def run_engine(root_cfg: DictConfig) -> object:
    """Runs ``config.engine`` (from :data:`vise_plugin.registry.ENGINES`) here, or submits it through
    submitit when ``config.slurm.use_slurm``."""
    function = ENGINES.get(root_cfg.config.engine, "config.engine")
    return submit_engine(root_cfg) if root_cfg.config.slurm.use_slurm else function(root_cfg)


def job_label(engine: str, job: Any) -> str:
    """How lines about a submitted engine job start: ``pretrain job 12``."""
    return f"{engine} job {job.job_id}"


def submit_engine(
    root_cfg: DictConfig, on_submitted: Optional[Callable[[Any], None]] = None, wait: Optional[bool] = None
) -> Any:
    """Submits ``config.engine`` on ``root_cfg`` as one submitit job; returns the job, or, when ``wait``
    (default ``config.slurm.wait``) is true, follows it (:class:`JobFollower`) and returns its result.

    Raises:
        ConfigError: the config, or a request the partition cannot satisfy, before anything is written.
        UserError: SLURM refused the job, or it ended without a result (one line with its state and log).
    """
    cfg = root_cfg.config
    engine = ENGINES.get(cfg.engine, "config.engine")
    if not getattr(engine, "multi_process", False) and (
        cfg.distributed.num_nodes > 1 or cfg.distributed.num_proc_per_node > 1
    ):
        raise ConfigError(
            f"config.engine={cfg.engine} runs in one process; set config.distributed.num_nodes=1 "
            "config.distributed.num_proc_per_node=1"
        )
    if hasattr(engine, "check_inputs"):
        engine.check_inputs(cfg)  # fail here, not in the queue
    slurm = OmegaConf.to_container(cfg.slurm, resolve=True)
    executor = make_executor(
        cfg.slurm.log_folder or os.path.join(cfg.run_dir, "slurm"),
        slurm,
        executor_parameters(cfg, cfg.device != "cpu"),
        slurm_max_num_timeout=int(cfg.slurm.max_num_timeout),
    )
    with sbatch_errors(cfg.engine):
        job = executor.submit(EngineJob(cfg.engine, OmegaConf.to_container(root_cfg, resolve=True)))
    print(
        f"submitted {cfg.engine} job {job.job_id} ({cfg.slurm.cluster}, {cfg.distributed.num_nodes} node(s) x "
        f"{cfg.distributed.num_proc_per_node} process(es)); logs: {job.paths.stdout.parent}",
        flush=True,
    )
    if on_submitted:
        on_submitted(job)
    if not (cfg.slurm.wait if wait is None else wait):
        return job
    label = job_label(cfg.engine, job)
    follower = JobFollower.from_config(slurm, say=lambda line: print(line, flush=True))
    follower.add(label, job)
    return engine_result(label, follower.follow()[label], str(job.paths.stdout.parent))


def engine_result(label: str, outcome: Outcome, logs: str) -> Any:
    """An ended engine job's result, or a :class:`UserError` saying in one line how it ended."""
    if isinstance(outcome.result, JobFailure):
        raise outcome.result.error_class(f"{label}: {outcome.result.message}")
    if outcome.error is not None:
        raise UserError(f"{label} {outcome.error}; logs: {logs}")
    return outcome.result
