"""Mixed precision through ``torch.amp``: the autocast context and, for fp16, the gradient scaler."""

import contextlib
from typing import Any, ContextManager, Dict

import torch

from vise_plugin.errors import ConfigError

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """Forward passes under ``torch.autocast`` (bf16 or fp16) and a backward/step that scales the
    loss when fp16 needs it.

    Args:
        precision: ``fp32`` | ``bf16`` | ``fp16``.
        device_type: ``cuda`` or ``cpu``.
    """

    def __init__(self, precision: str = "fp32", device_type: str = "cpu"):
        if precision not in DTYPES:
            raise ConfigError(f"config.speed.precision={precision!r}: use one of {list(DTYPES)}")
        self.precision = precision
        self.device_type = device_type
        self.dtype = DTYPES[precision]
        self.scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()`` and ``optimizer.step()``; with fp16 the loss is scaled and a step whose
        gradients overflowed is skipped (the scale then shrinks)."""
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def state_dict(self) -> Dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)
