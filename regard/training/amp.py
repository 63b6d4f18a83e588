"""Mixed precision that fits the device: bf16 autocast, or fp16 with a gradient scaler.

``train.precision``: ``fp32`` (no autocast), ``bf16`` (CPUs and GPUs that support it),
``fp16`` (CUDA, with a gradient scaler against underflow), or ``mixed`` (bf16 where the
hardware multiplies it natively, else fp16 on CUDA and fp32 elsewhere). The master weights
and the optimizer stay fp32 everywhere. bf16 asked for on a CPU without bf16 instructions
(AVX2 only) still runs, with a warning: PyTorch's fallback there is 20–100× slower than fp32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from regard.device import fast_bf16, warn_if_slow_bf16
from regard.errors import RegardError


@dataclass(frozen=True)
class Autocast:
    """How the forward pass runs on ``device``; ``dtype`` None means plain fp32."""

    device: torch.device
    dtype: torch.dtype | None = None

    def __call__(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.needs_scaler else None


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type in ("cpu", "mps")


def autocast_for(precision: str, device: torch.device) -> Autocast:
    """The :class:`Autocast` for ``train.precision`` on ``device``; a clear error where it cannot run."""
    if precision == "fp32":
        return Autocast(device)
    if precision == "mixed":
        precision = "bf16" if fast_bf16(device) else "fp16" if device.type == "cuda" else "fp32"
        if precision == "fp32":
            return Autocast(device)
    if precision == "bf16" and not bf16_supported(device):
        raise RegardError(f"train.precision: bf16 is not supported on {device} "
                          f"({torch.cuda.get_device_name(device)}); use fp16 or mixed")
    if precision == "fp16" and device.type != "cuda":
        raise RegardError(f"train.precision: fp16 needs a CUDA GPU (this run is on {device}); use bf16 or mixed")
    if precision == "bf16":
        warn_if_slow_bf16(device, "training in")
    return Autocast(device, torch.bfloat16 if precision == "bf16" else torch.float16)
