"""Inference precisions: how a loaded fp32 model is converted for translation, and where it runs.

Torch is imported only to convert and to find devices, so the command line can offer the
choices (:data:`PRECISIONS`) without loading it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable

from regard.device import check_device_name, resolve_device, warn_if_slow_bf16
from regard.errors import RegardError

if TYPE_CHECKING:
    import torch
    from torch import nn


def keep_fp32(model: nn.Module) -> nn.Module:
    """The model as loaded."""
    return model


def to_bf16(model: nn.Module) -> nn.Module:
    """Every weight cast to bfloat16."""
    import torch

    return model.to(torch.bfloat16)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of every Linear, GRU/LSTM and GRU/LSTM cell (weights int8,
    activations quantised on the fly); embeddings and attention products stay fp32."""
    import torch
    from torch import nn

    layers = {nn.Linear, nn.GRU, nn.LSTM, nn.GRUCell, nn.LSTMCell}
    with warnings.catch_warnings():  # the eager API is deprecated in favour of torchao, still in torch 2.13
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, layers, dtype=torch.qint8)


PRECISIONS: dict[str, Callable[[nn.Module], nn.Module]] = {  # name → how the fp32 model is converted
    "fp32": keep_fp32,
    "bf16": to_bf16,
    "int8": quantize_int8,
}
CPU_ONLY = ("int8",)  # PyTorch's dynamic quantisation has CPU kernels only


def check_precision(precision: str) -> None:
    """Raise ValueError unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def inference_device(precision: str, device: str = "auto") -> torch.device:
    """Where a model converted to ``precision`` runs: ``device``, resolved by
    :func:`regard.device.resolve_device`. A CPU-only precision takes ``auto`` as the CPU and
    refuses any other device with a :class:`RegardError`."""
    check_precision(precision)
    if precision not in CPU_ONLY:
        target = resolve_device(device)
        if precision == "bf16":
            warn_if_slow_bf16(target, "translating in")
        return target
    if device not in ("auto", "cpu"):
        check_device_name(device)
        raise RegardError(f"precision {precision} runs on the CPU only (PyTorch's dynamic quantisation), not on "
                          f"{device!r}: use fp32 or bf16 there, or the cpu device")
    return resolve_device("cpu")
