"""Following submitted jobs until they end: each state change with SLURM's reason, the latest log line
while a job runs, and how each ended as one line (its result, its error, or the state it ended in
without a result).

SLURM's states come from ``squeue`` (which also gives the reason a job waits) and, once the job has
left the queue, from accounting (``sacct``); submitit's local executor has its own states.
"""

import dataclasses
import logging
import re
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

#: states a job does not leave (PREEMPTED is left out: a requeued job goes back to PENDING)
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
    "REVOKED",
}
RESULT_GRACE_S = 5.0  # a result file written just before the job ended may take this long to appear here


@dataclasses.dataclass
class Outcome:
    """How a job ended. ``error`` is one line when it has no result; ``without_result`` is true when the
    job was stopped from outside (killed, a node lost, the time limit), so that running it again may work."""

    job_id: str
    state: str
    result: Any = None
    error: Optional[str] = None
    without_result: bool = False


def _run(cmd: List[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _state_and_reason(field_state: str, field_reason: str) -> Tuple[str, str]:
    reason = field_reason.strip()
    state = field_state.split()[0] if field_state.strip() else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    return state, "" if reason in ("None", "(null)") else reason


def slurm_states(job_ids: List[str]) -> Dict[str, Tuple[str, str]]:
    """``{job id: (state, reason)}`` of SLURM jobs in one ``squeue`` call (and one ``sacct`` call for those
    that have left the queue); ``UNKNOWN`` when neither knows a job yet, reason empty when SLURM gives none."""
    states: Dict[str, Tuple[str, str]] = {}
    if not job_ids:
        return states
    for line in _run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"]).splitlines():
        job_id, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        states[job_id.strip()] = _state_and_reason(state, reason)
    missing = [j for j in job_ids if j not in states]
    if missing:
        for line in _run(["sacct", "-n", "-X", "-P", "-j", ",".join(missing), "-o", "JobID,State,Reason"]).splitlines():
            job_id, _, rest = line.partition("|")
            state, _, reason = rest.partition("|")
            states.setdefault(job_id.strip(), _state_and_reason(state, reason))
    return {j: states.get(j, ("UNKNOWN", "")) for j in job_ids}


def is_slurm_job(job: Any) -> bool:
    return type(job).__name__ == "SlurmJob"


def local_state(job: Any) -> Tuple[str, str]:
    """``(state, "")`` of a job of submitit's local executor, in SLURM's words."""
    if not job.done():
        return "RUNNING", ""
    return ("COMPLETED" if job.state.upper() in ("FINISHED", "COMPLETED") else "FAILED"), ""


def last_log_lines(job: Any, count: int = 1) -> List[str]:
    """The last ``count`` non-empty lines the job's first task wrote (stdout and stderr, the newer last);
    progress bars' carriage returns count as line ends."""
    lines: List[str] = []
    paths = [p for p in (job.paths.stdout, job.paths.stderr) if p.exists()]
    for path in sorted(paths, key=lambda p: p.stat().st_mtime):
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 65536))
            text = f.read().decode("utf-8", "replace")
        lines += [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    return lines[-count:]


def failure_line(error: BaseException) -> str:
    """The exception line of a submitit ``FailedJobError`` (the last line of the job's traceback)."""
    lines = [line.rstrip() for line in str(error).splitlines()]
    dashes = [i for i, line in enumerate(lines) if set(line.strip()) == {"-"}]
    trace = lines[dashes[0] + 1 : dashes[1]] if len(dashes) >= 2 else lines
    trace = [line.strip() for line in trace if line.strip()]
    return trace[-1] if trace else "no message"


def _result_written(job: Any) -> bool:
    """Whether the job's first task has written its result file; the folder's attributes are touched first,
    as submitit does, so that an NFS client does not answer from a stale cache."""
    folder = job.paths.folder
    try:
        folder.chmod(folder.stat().st_mode)
    except OSError:
        pass
    return job.paths.result_pickle.exists()


def _without_result(job: Any, state: str) -> Outcome:
    last = " | ".join(last_log_lines(job, 3)) or "nothing"
    return Outcome(
        job.job_id, state, error=f"ended {state} without a result; its log ends: {last}", without_result=True
    )


def _outcome(job: Any, state: str) -> Outcome:
    import submitit

    if not _result_written(job):  # poll() gave a SLURM job RESULT_GRACE_S (a local job's process has ended):
        return _without_result(job, state)  # submitit's results() would wait 15 s more for nothing
    try:
        return Outcome(job.job_id, state, result=job.results()[0])  # the first task's
    except submitit.core.utils.UncompletedJobError:
        return _without_result(job, state)
    except submitit.core.utils.FailedJobError as e:
        return Outcome(job.job_id, state, error=f"failed ({failure_line(e)})")


class JobFollower:
    """Polls submitted jobs until each has ended.

    Args:
        report_every_s: the least time between two log lines of a running job shown here (0: none).
        poll_s: time between two looks at the jobs' states.
        say: where the progress lines go (``print`` to the terminal by default; None: nowhere).
    """

    def __init__(self, report_every_s: float = 30.0, poll_s: float = 2.0, say: Optional[Callable[[str], None]] = print):
        self.report_every_s = float(report_every_s)
        self.poll_s = float(poll_s)
        self.say = say
        self.jobs: Dict[str, Any] = {}
        self._seen: Dict[str, Tuple[str, str]] = {}
        self._line: Dict[str, Tuple[float, str]] = {}
        self._ended_at: Dict[str, float] = {}

    @classmethod
    def from_config(cls, slurm_cfg: Any, say: Optional[Callable[[str], None]] = print) -> "JobFollower":
        return cls(report_every_s=slurm_cfg.get("report_every_s", 30), poll_s=slurm_cfg.get("poll_s", 2), say=say)

    def add(self, label: str, job: Any) -> None:
        """Follows ``job`` under ``label`` (how lines about it start, e.g. ``pretrain job 12``)."""
        self.jobs[label] = job

    def _tell(self, text: str) -> None:
        if self.say:
            self.say(text)

    def poll(self) -> Dict[str, Outcome]:
        """One look at every followed job; returns (and stops following) those that have ended."""
        ended: Dict[str, Tuple[Any, str]] = {}
        on_slurm = slurm_states([job.job_id for job in self.jobs.values() if is_slurm_job(job)])
        for label, job in list(self.jobs.items()):
            state, reason = on_slurm[job.job_id] if is_slurm_job(job) else local_state(job)
            if (state, reason) != self._seen.get(label):
                self._seen[label] = (state, reason)
                self._tell(f"{label}: {state}" + (f" ({reason})" if reason else ""))
            if state == "RUNNING" and self.report_every_s > 0:
                self._report_log(label, job)
            if state not in ENDED:
                continue
            if is_slurm_job(job) and not _result_written(job):
                first = self._ended_at.setdefault(label, time.monotonic())
                if time.monotonic() - first < RESULT_GRACE_S:
                    continue
            ended[label] = (self.jobs.pop(label), state)
            self._ended_at.pop(label, None)  # a job added again under this label gets its own grace
        slurm_jobs = [job for job, _ in ended.values() if is_slurm_job(job)]
        if slurm_jobs:
            slurm_jobs[0].watcher.update()  # submitit's own view of the states (one sacct), which results() consults
        return {label: _outcome(job, state) for label, (job, state) in ended.items()}

    def _report_log(self, label: str, job: Any) -> None:
        last_time, last_line = self._line.get(label, (float("-inf"), ""))
        if time.monotonic() - last_time < self.report_every_s:
            return
        line = (last_log_lines(job, 1) or [""])[0]
        if line and line != last_line:
            self._line[label] = (time.monotonic(), line)
            self._tell(f"{label} | {line[:200]}")

    def follow(self, on_end: Optional[Callable[[str, Outcome], None]] = None) -> Dict[str, Outcome]:
        """Polls until every followed job has ended; returns each one's last outcome by label.

        Args:
            on_end: called with each outcome as its job ends; it may :meth:`add` a job again under the
                same label (a retry), which is then followed too.
        """
        outcomes: Dict[str, Outcome] = {}
        while self.jobs:
            for label, outcome in self.poll().items():
                outcomes[label] = outcome
                if on_end:
                    on_end(label, outcome)
            if self.jobs:
                time.sleep(self.poll_s)
        return outcomes
