"""Several benchmark configs for one checkpoint: ``tools/benchmark_suite.py``."""

import logging
import os
import sys
from typing import Dict, List, Sequence

from ..config import compose_config
from ..errors import UserError

logger = logging.getLogger(__name__)

PAPER_BENCHMARKS = tuple(f"{protocol}/{task}_r50" for protocol in ("linear", "finetune")
                         for task in ("unbiased_emotion", "politics", "hateful_memes", "cub"))


def _option(args: List[str], name: str, default: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    return values[-1] if values else default


def run_suite(argv: Sequence[str]) -> int:
    """Runs every benchmark named by ``benchmarks=`` with the shared overrides; returns the exit code."""
    from .runner import run_benchmark

    args = list(argv)
    names = [n.strip() for n in _option(args, "benchmarks", ",".join(PAPER_BENCHMARKS)).strip("[]").split(",") if n]
    output = _option(args, "output", "runs/suite")
    overrides = [a for a in args if not a.startswith(("benchmarks=", "output="))]
    results: Dict[str, str] = {}
    for name in names:
        run_dir = os.path.join(output, name.replace("/", "_"))
        try:
            cfg = compose_config([f"config=benchmark/{name}", *overrides, f"config.run_dir={run_dir}",
                                  f"config.benchmark.results_table={os.path.join(output, 'results.md')}"])
            run_benchmark(cfg)
            results[name] = "ok"
        except UserError as e:
            results[name] = f"error: {e}"
            print(f"{name}: error: {e}", file=sys.stderr, flush=True)
    failed = [n for n, r in results.items() if r != "ok"]
    print(f"{len(names) - len(failed)}/{len(names)} benchmarks done; table: {os.path.join(output, 'results.md')}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 2 if failed else 0
