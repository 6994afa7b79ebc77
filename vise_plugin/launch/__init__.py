from .job_runner import JobRunner, slurm_parameters

__all__ = ["JobRunner", "slurm_parameters"]
