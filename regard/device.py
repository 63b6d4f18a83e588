"""Which PyTorch device to run on: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

:data:`DEVICE_HELP` and :func:`check_device_name` need no torch, so the command line's
help and config validation stay light; :func:`resolve_device` checks that the device
is really there, and says so in one line when it is not.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from regard.errors import RegardError

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
