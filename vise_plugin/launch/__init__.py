from vise_plugin.launch.job_runner import JobRunner, slurm_parameters

__all__ = ["JobRunner", "slurm_parameters"]
