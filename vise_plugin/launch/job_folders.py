"""Where submitit keeps a job's files (submission, pickles, logs): ``<folder>/<job id>/``, on SLURM and on
submitit's local executor alike."""

import os

JOB_ID = "%j"  # submitit's placeholder for the job id in its folder argument


def job_folder(folder: str) -> str:
    """submitit's folder argument for the files of each job in ``<folder>/<job id>/``."""
    return os.path.join(folder, JOB_ID)


def remove_placeholder_folder() -> None:
    """Removes the empty ``<folder>/%j`` folder that submitit's local executor makes from its folder
    argument as written before it starts a job's tasks (their files go to ``<folder>/<job id>/``).

    Every job calls it first; it does nothing outside a job of the local executor.
    """
    folder = os.environ.get("SUBMITIT_FOLDER", "")
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or os.path.basename(folder) != JOB_ID:
        return
    try:
        os.rmdir(folder)
    except OSError:  # removed already by another task or job; or not empty, and then not ours to remove
        pass
