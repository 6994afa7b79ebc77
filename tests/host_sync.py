"""Catching host syncs on CPU: the ATen calls that make a GPU run wait for the device.

``.item()``, ``bool(t)``, ``float(t)`` and ``if t:`` all dispatch ``aten::_local_scalar_dense``; a
boolean mask used as an index, ``nonzero`` and ``masked_select`` need the device's answer to size
their output. On a GPU each of them stalls the step; on CPU they run silently, so this mode
records them.
"""

import traceback
from typing import List

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default, aten.is_nonzero.default}


class HostSyncRecorder(TorchDispatchMode):
    """Records the ATen calls made inside the ``with`` block that would wait for a GPU."""

    def __init__(self):
        super().__init__()
        self.calls: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCING or (
            func is aten.index.Tensor
            and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        ):
            self.calls.append(f"{func} at {_caller()}")
        return func(*args, **kwargs)


def _caller() -> str:
    """The innermost frame outside torch and this module: the code that asked for the value."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and not frame.filename.endswith("host_sync.py"):
            return f"{frame.filename}:{frame.lineno} ({frame.line})"
    return "?"
