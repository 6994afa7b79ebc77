"""What a run changes in its process, put back when it returns.

A run sets torch's thread count, seeds the random generators, installs log handlers and may switch
on deterministic kernels; called from a notebook, a test or another library, it must leave the
caller's process as it found it. :func:`keeps_process_state` wraps the entry points of the package
(the engines, the label and shard jobs, feature extraction, the suite, the exports, the ``vise-*``
commands); the builders below them that draw seeded weights (:func:`seeded`) leave the caller's
generators alone too.
"""

import contextlib
import functools
import logging
import os
import random
import signal
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Tuple, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


def backend_flags() -> Dict[str, Any]:
    """The global switches of torch's kernels (the ones bitwise results depend on)."""
    cudnn = torch.backends.cudnn
    return {
        "default_dtype": torch.get_default_dtype(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn.enabled": cudnn.enabled,
        "cudnn.benchmark": cudnn.benchmark,
        "cudnn.deterministic": cudnn.deterministic,
        "cudnn.allow_tf32": cudnn.allow_tf32,
        "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def set_backend_flags(flags: Dict[str, Any]) -> None:
    cudnn = torch.backends.cudnn
    torch.set_default_dtype(flags["default_dtype"])
    torch.use_deterministic_algorithms(flags["deterministic_algorithms"], warn_only=flags["deterministic_warn_only"])
    cudnn.enabled, cudnn.benchmark = flags["cudnn.enabled"], flags["cudnn.benchmark"]
    cudnn.deterministic, cudnn.allow_tf32 = flags["cudnn.deterministic"], flags["cudnn.allow_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul.allow_tf32"]
    torch.set_float32_matmul_precision(flags["float32_matmul_precision"])


@dataclass
class ProcessState:
    """A snapshot of the process-wide settings a run may touch."""

    threads: int
    torch_rng: torch.Tensor
    cuda_rng: List[torch.Tensor]
    python_rng: Tuple
    numpy_rng: Tuple
    backend: Dict[str, Any]
    warning_filters: List[Tuple]
    root_handlers: List[logging.Handler]
    root_level: int
    cwd: str
    environ: Dict[str, str]
    signal_handlers: Dict[int, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> "ProcessState":
        root = logging.getLogger()
        main_thread = threading.current_thread() is threading.main_thread()
        return cls(
            threads=torch.get_num_threads(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            python_rng=random.getstate(),
            numpy_rng=np.random.get_state(),
            backend=backend_flags(),
            warning_filters=list(warnings.filters),
            root_handlers=list(root.handlers),
            root_level=root.level,
            cwd=os.getcwd(),
            environ=dict(os.environ),
            signal_handlers={s: signal.getsignal(s) for s in _SIGNALS} if main_thread else {},
        )

    def restore(self) -> None:
        """Puts every captured setting back; log handlers added since are closed and removed."""
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        set_backend_flags(self.backend)
        warnings.filters[:] = self.warning_filters
        getattr(warnings, "_filters_mutated", lambda: None)()  # what catch_warnings calls: cached decisions reset
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in self.root_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in self.root_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(self.root_level)
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        for key in set(os.environ) - set(self.environ):
            del os.environ[key]
        os.environ.update({k: v for k, v in self.environ.items() if os.environ.get(k) != v})
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self.signal_handlers.items():
                if signal.getsignal(signum) is not handler and handler is not None:
                    signal.signal(signum, handler)

    def differences(self, other: "ProcessState") -> List[str]:
        """The names of the settings that differ between two snapshots (empty: the same process state)."""
        found = [
            name
            for name in ("threads", "python_rng", "root_handlers", "root_level", "cwd", "environ", "signal_handlers")
            if getattr(self, name) != getattr(other, name)
        ]
        found += [f"backend.{k}" for k in self.backend if self.backend[k] != other.backend[k]]
        if not torch.equal(self.torch_rng, other.torch_rng):
            found.append("torch_rng")
        if len(self.cuda_rng) != len(other.cuda_rng) or any(
            not torch.equal(a, b) for a, b in zip(self.cuda_rng, other.cuda_rng)
        ):
            found.append("cuda_rng")
        mine, theirs = self.numpy_rng, other.numpy_rng
        if mine[0] != theirs[0] or not np.array_equal(mine[1], theirs[1]) or mine[2:] != theirs[2:]:
            found.append("numpy_rng")
        if self.warning_filters != other.warning_filters:
            found.append("warning_filters")
        return found


@contextlib.contextmanager
def kept_process_state() -> Iterator[ProcessState]:
    """Runs the block and then puts back the process state it found (see :class:`ProcessState`)."""
    state = ProcessState.capture()
    try:
        yield state
    finally:
        state.restore()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Runs the block with torch's generators (CPU and every GPU) seeded with ``seed``; the caller's
    generator states are put back afterwards, so seeded weights do not reseed the caller's draws."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def keeps_process_state(function: F) -> F:
    """Decorates a public entry point so that it leaves its caller's process state unchanged."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with kept_process_state():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
