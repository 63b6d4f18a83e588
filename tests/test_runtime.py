"""Process-wide settings: freed large tensors are reused without page faults, and the user's
environment wins."""

import os
import platform
import subprocess
import sys

import pytest

from regard.runtime import ALLOCATOR_ENV, MMAP_THRESHOLD
from regard.translator import Translator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

# Score tensors of a few MiB, of a different size at every step (glibc adapts its threshold
# only to sizes it has seen freed, and returns freed memory at the top of the heap).
WORKLOAD = """
import resource, sys, torch
from regard.runtime import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "tuned" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(40):
    scores = torch.log_softmax(torch.randn(100 + 10 * i, 6000), dim=1)
    del scores
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str, **env: str) -> tuple[str, int]:
    """(what reuse_freed_memory returned, minor page faults of the workload) in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode], env={**clean, **env}, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    return out[0], int(out[1])


def test_reusing_freed_memory_removes_the_page_faults_of_large_tensors():
    _, default = page_faults("default")
    applied, tuned = page_faults("tuned")
    assert applied == "True"
    assert default > 20_000 and tuned * 5 < default  # about 160,000 against 15,000 here


def test_a_threshold_set_in_the_environment_wins():
    applied, faults = page_faults("tuned", MALLOC_MMAP_THRESHOLD_="131072")
    _, default = page_faults("default", MALLOC_MMAP_THRESHOLD_="131072")
    assert applied == "False" and faults * 2 > default  # nothing changed: as many faults as before


def test_loading_a_translator_sets_it_for_this_process_and_its_workers(trained_run, monkeypatch):
    for name in ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    Translator.load(trained_run)
    assert [os.environ.get(name) for name in ALLOCATOR_ENV] == [str(MMAP_THRESHOLD), str(2 * MMAP_THRESHOLD)]
