"""What bitwise-equal weights depend on: the settings a run applies, and the record a checkpoint keeps.

Two runs end with bit-identical weights only when they compute with the same kernels in the same
order: the same torch build, device, CPU kernel set (``torch.backends.cpu.get_cpu_capability()``),
thread count and cuDNN / deterministic-algorithm switches. A checkpoint records these
(:func:`determinism_record`); a resume under other values still continues exactly where the run
stopped, but its weights agree with an uninterrupted run only within float tolerance.
"""

import contextlib
import os
import platform
from typing import Any, Dict, Iterator, List, Mapping, Optional

import torch

from vise_plugin.process_state import backend_flags, set_backend_flags

CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for deterministic results (CUDA's reproducibility notes)


@contextlib.contextmanager
def speed_settings(cpu_threads: Optional[int] = None, deterministic: bool = False) -> Iterator[None]:
    """Runs the block with torch's intra-op threads set to ``cpu_threads`` (``config.speed.cpu_threads``; None
    keeps the process's) and, with ``deterministic`` (``config.speed.deterministic``), deterministic
    algorithms, ``cudnn.deterministic``, no ``cudnn.benchmark`` and ``CUBLAS_WORKSPACE_CONFIG``, for bitwise
    resumes on GPUs; the threads, flags and variable are put back afterwards. cuBLAS reads the variable at
    its first call in the process, so :func:`vise_plugin.engine.pretrain.pretrain` sets it before any CUDA
    work as well."""
    threads, flags, workspace = torch.get_num_threads(), backend_flags(), os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if cpu_threads:
            torch.set_num_threads(int(cpu_threads))
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.set_num_threads(threads)
        set_backend_flags(flags)
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


def determinism_record(device: torch.device) -> Dict[str, Any]:
    """The settings bitwise-equal results depend on, as plain values (saved in every checkpoint)."""
    cudnn = torch.backends.cudnn
    return {
        "torch": str(torch.__version__),  # a str subclass that torch.load(weights_only=True) refuses
        "device": device_name(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def determinism_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> List[str]:
    """``["threads 2 -> 1", ...]``: the recorded settings that differ (keys missing from ``saved``, an older
    checkpoint, are not compared)."""
    return [f"{key} {saved[key]} -> {now[key]}" for key in now if key in saved and saved[key] != now[key]]
