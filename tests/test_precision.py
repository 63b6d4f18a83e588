"""Reduced precision only where the hardware has it: ``mixed`` picks bf16 on a CPU with bf16
instructions and fp32 on one without; an explicit bf16 there still runs, with a warning."""

from __future__ import annotations

import warnings

import pytest
import torch

import regard.device
from regard.cli import main
from regard.errors import RegardWarning
from regard.training.amp import autocast_for

CPU = torch.device("cpu")


@pytest.fixture(params=[True, False], ids=["bf16-cpu", "avx2-cpu"])
def bf16_hardware(request, monkeypatch) -> bool:
    """This CPU as one with (True) or without (False) bf16 matrix instructions."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: request.param)
    return request.param


def test_the_check_reads_onednn_on_the_cpu(bf16_hardware):
    assert regard.device.fast_bf16(CPU) is bf16_hardware


def test_mixed_is_bf16_only_where_the_cpu_has_it(bf16_hardware):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mixed never warns: it picks what is fast
        autocast = autocast_for("mixed", CPU)
    assert autocast.dtype == (torch.bfloat16 if bf16_hardware else None)
    assert autocast.scaler() is None


def test_explicit_bf16_runs_everywhere_and_warns_where_it_crawls(bf16_hardware):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        autocast = autocast_for("bf16", CPU)
    assert autocast.dtype == torch.bfloat16
    ours = [w for w in caught if issubclass(w.category, RegardWarning)]
    assert len(ours) == (0 if bf16_hardware else 1)
    if ours:
        assert "slower than fp32" in str(ours[0].message) and "mixed" in str(ours[0].message)


def test_translating_in_bf16_without_bf16_instructions_is_one_warning_line(trained_run, capsys, monkeypatch,
                                                                          bf16_hardware, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("the cat\n")
    assert main(["translate", "--model", str(trained_run), "--precision", "bf16", "-i", str(src)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    if bf16_hardware:
        assert err == []
    else:
        assert len(err) == 1 and err[0].startswith("regard: warning: translating in bf16") and "fp32" in err[0]
