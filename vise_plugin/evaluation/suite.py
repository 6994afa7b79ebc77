"""Several benchmark configs for one checkpoint, or for each checkpoint a training run writes:
``tools/benchmark_suite.py``."""

import logging
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence

from iopath.common.file_io import g_pathmgr
from omegaconf import OmegaConf

from vise_plugin.config import compose_config
from vise_plugin.errors import ConfigError, UserError
from vise_plugin.evaluation.comparison import parse_weights, write_comparison
from vise_plugin.evaluation.results import run_folder
from vise_plugin.process_state import keeps_process_state

logger = logging.getLogger(__name__)

PAPER_BENCHMARKS = tuple(
    f"{protocol}/{task}_r50"
    for protocol in ("linear", "finetune")
    for task in ("unbiased_emotion", "politics", "hateful_memes", "cub")
)
SUITE_OPTIONS = ("benchmarks=", "output=", "watch=", "poll_seconds=", "weights=")
DONE_FILE = "checkpoints_done.txt"


def _option(args: List[str], name: str, default: Optional[str]) -> Optional[str]:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    return values[-1] if values else default


def run_benchmarks(names: Sequence[str], overrides: Sequence[str], output: str) -> List[str]:
    """Runs (or, with ``config.slurm.use_slurm=true``, submits) each benchmark into ``<output>/<name>``,
    all appending to ``<output>/results.md``; returns the names that failed. Submitted benchmarks are all
    submitted first; with ``config.slurm.wait=true`` they are then followed together until each has
    ended. The closing line names the table only once a benchmark has written it."""
    from vise_plugin.launch.job_follower import JobFollower
    from vise_plugin.launch.submitit_launcher import engine_result, job_label, run_engine, submit_engine

    failed, submitted = [], {}
    table = os.path.join(output, "results.md")
    for name in names:
        run_dir = run_folder(output, name)
        try:
            cfg = compose_config(
                [
                    f"config=benchmark/{name}",
                    *overrides,
                    f"config.run_dir={run_dir}",
                    f"config.benchmark.results_table={table}",
                ]
            )
            if cfg.config.slurm.use_slurm and cfg.config.slurm.wait:
                job = submit_engine(cfg, wait=False)
                submitted[f"{name}: {job_label(cfg.config.engine, job)}"] = (name, job, cfg.config.slurm)
            else:
                run_engine(cfg)
        except UserError as e:
            failed.append(name)
            print(f"{name}: error: {e}", file=sys.stderr, flush=True)
    if submitted:
        follower = JobFollower.from_config(next(iter(submitted.values()))[2], say=lambda line: print(line, flush=True))
        for label, (_, job, _) in submitted.items():
            follower.add(label, job)
        for label, outcome in follower.follow().items():
            name, job, _ = submitted[label]
            try:
                engine_result(label, outcome, str(job.paths.stdout.parent))
            except UserError as e:
                failed.append(name)
                print(f"error: {e}", file=sys.stderr, flush=True)
    done = f"{len(names) - len(failed)}/{len(names)}"
    if names and len(failed) == len(names):
        print(f"every benchmark failed ({done}): {', '.join(failed)}", flush=True)
        return failed
    print(
        f"{done} benchmarks done or submitted"
        + (f"; table: {table}" if g_pathmgr.exists(table) else "")
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return failed


def phase_checkpoints(run_dir: str) -> Dict[int, str]:
    """``{N: path}`` of the ``model_phase<N>.torch`` files in a training run folder."""
    found = {}
    for name in g_pathmgr.ls(run_dir) if g_pathmgr.exists(run_dir) else []:
        match = re.fullmatch(r"model_phase(\d+)\.torch", name)
        if match:
            found[int(match.group(1))] = os.path.join(run_dir, name)
    return found


def last_phase(run_dir: str) -> int:
    """The phase index of the run's final checkpoint, from its ``train_config.yaml``."""
    path = os.path.join(run_dir, "train_config.yaml")
    if not g_pathmgr.exists(path):
        raise ConfigError(f"watch={run_dir}: no train_config.yaml there; point watch= at a pretraining run folder")
    with g_pathmgr.open(path) as f:
        return int(OmegaConf.load(f).config.optimizer.num_epochs) - 1


def watch_run(
    run_dir: str, names: Sequence[str], overrides: Sequence[str], output: str, poll_seconds: float = 60.0
) -> List[str]:
    """Runs the suite on each ``model_phase<N>.torch`` of ``run_dir`` as it appears, into
    ``<output>/phase<N>``, until the run's last phase is done. Checkpoints already handled are
    listed in ``<output>/checkpoints_done.txt``, so a restarted watch goes on where it stopped."""
    g_pathmgr.mkdirs(output)
    done_path = os.path.join(output, DONE_FILE)
    done = set()
    if g_pathmgr.exists(done_path):
        with g_pathmgr.open(done_path) as f:
            done = {int(line) for line in f if line.strip()}
    failed: List[str] = []
    final = last_phase(run_dir)
    while final not in done:
        for phase, path in sorted(phase_checkpoints(run_dir).items()):
            if phase in done:
                continue
            logger.info("benchmarking %s", path)
            failed += [
                f"phase{phase}/{n}"
                for n in run_benchmarks(
                    names, [*overrides, f"config.model.weights={path}"], os.path.join(output, f"phase{phase}")
                )
            ]
            done.add(phase)
            with g_pathmgr.open(done_path, "a") as f:
                f.write(f"{phase}\n")
        if final not in done:
            time.sleep(poll_seconds)
    return failed


def compare_weights(
    weights: Dict[str, Dict[str, Optional[str]]], names: Sequence[str], overrides: Sequence[str], output: str
) -> List[str]:
    """The list for each named weights (:func:`parse_weights`'s entries: a file or None for random init,
    and the trunk where it is not the shared one), into ``<output>/<name>``, then the side-by-side table
    and chart (:func:`write_comparison`); returns the runs that failed."""
    failed: List[str] = []
    for name, entry in weights.items():
        own = [f"config.model.weights={entry['weights'] or 'null'}"]
        if entry["trunk"]:
            own.append(f"config.model.trunk={entry['trunk']}")
        failed += [f"{name}/{n}" for n in run_benchmarks(names, [*overrides, *own], os.path.join(output, name))]
    for path in write_comparison(output, list(weights), list(names)):
        print(f"wrote {path}", flush=True)
    return failed


@keeps_process_state
def run_suite(argv: Sequence[str]) -> int:
    """``benchmarks=a,b output=dir [watch=<run folder> poll_seconds=60 | weights={name: file, ...}]
    [config.* overrides]``; returns the exit code (2 when any benchmark failed)."""
    args = list(argv)
    names = [n.strip() for n in _option(args, "benchmarks", ",".join(PAPER_BENCHMARKS)).strip("[]").split(",") if n]
    output = _option(args, "output", "runs/suite")
    overrides = [a for a in args if not a.startswith(SUITE_OPTIONS)]
    watch = _option(args, "watch", None)
    weights = _option(args, "weights", None)
    try:
        if watch:
            failed = watch_run(watch, names, overrides, output, float(_option(args, "poll_seconds", "60")))
        elif weights:
            failed = compare_weights(parse_weights(weights), names, overrides, output)
        else:
            failed = run_benchmarks(names, overrides, output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2 if failed else 0
