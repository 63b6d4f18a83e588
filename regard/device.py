"""Which PyTorch device to run on: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

:data:`DEVICE_HELP` and :func:`check_device_name` need no torch, so the command line's
help and config validation stay light; :func:`resolve_device` checks that the device
is really there, and says so in one line when it is not.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from regard.errors import RegardError, RegardWarning

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_HELP = "auto (the default: CUDA if available, else CPU), cpu, cuda, cuda:N or mps"


def check_device_name(name: str, what: str = "device") -> None:
    """Raise :class:`RegardError` unless ``name`` is one of the device names Regard knows."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise RegardError(f"{what} must be {DEVICE_HELP}; got {name!r}")


def resolve_device(name: str = "auto", what: str = "device") -> torch.device:
    """The :class:`torch.device` for ``name``; a clear error when it is not available here."""
    import torch

    check_device_name(name, what)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RegardError(f"{what} {name!r}: CUDA is not available on this machine "
                              f"(PyTorch {torch.__version__}{'' if torch.version.cuda else ', a CPU-only build'}); "
                              "use cpu or auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise RegardError(f"{what} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RegardError(f"{what} 'mps': Apple's Metal backend is not available on this machine; use cpu or auto")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: CUDA GPUs from Ampere on,
    Apple's GPUs, and CPUs whose oneDNN has a bf16 path (AVX-512 BW and up, AMX). On other
    CPUs (AVX2 only) PyTorch falls back to a reference loop, 20–100× slower than fp32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return device.type == "mps"


def warn_if_slow_bf16(device: torch.device, what: str) -> None:
    """Warn (:class:`RegardWarning`) that bf16 ``what`` will crawl on ``device`` unless :func:`fast_bf16`."""
    if fast_bf16(device):
        return
    import warnings

    import torch

    kind = f"CPU with {torch.backends.cpu.get_cpu_capability()} only" if device.type == "cpu" else str(device)
    warnings.warn(f"{what} bf16 on this {kind} (no bf16 matrix instructions) runs many times slower than fp32; "
                  "use fp32, or mixed (bf16 only where the hardware has it)", RegardWarning, stacklevel=3)
