"""Process-wide settings that training and translation make for speed and memory.

Both act on the whole process, so they are made only where Regard owns the process's work
(:func:`regard.training.trainer.train`, :meth:`regard.translator.Translator.load`), and a value
the user sets in the environment always wins. Worker processes inherit them through the
environment.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit systems
ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
KERNEL_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_kernel_caches(capacity: int) -> None:
    """Keep at most ``capacity`` oneDNN kernels per cache in this process and the workers it starts.

    bf16 products run through oneDNN, which builds a kernel (with its own buffers) for every new
    matrix shape and keeps up to 1,024 of them in each of two caches: oneDNN's and PyTorch's ideep
    layer above it. Batches vary in shape, so a bf16 training process otherwise grows by about
    800 MiB (docs/PERFORMANCE.md, "Memory"). A decoder reuses a handful of shapes for all its time
    steps, so 16 lose no speed. Both caches read their size when first used: this only acts
    before the process's first bf16 product, and never overrides a size set in the environment.
    """
    if capacity > 0:
        for name in KERNEL_CACHE_ENV:
            os.environ.setdefault(name, str(capacity))


def reuse_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Let glibc keep freed blocks of up to ``threshold`` bytes for reuse instead of unmapping them.

    glibc serves each allocation above its mmap threshold (128 KiB, raised only as such blocks are
    freed) with fresh pages from the kernel and unmaps them on free, so a decoder step that
    allocates its (rows × vocabulary) scores pays a page fault per 4 KiB, every step: 260,000
    faults and 13 % of the time of a beam search over test_2016_flickr, and 10 % of bf16 training
    steps (docs/PERFORMANCE.md, "Page faults"). A fixed threshold keeps such blocks in the heap,
    and a trim threshold of twice that stops freed memory at the heap's top being handed back
    at once. Peak memory stays the same: the blocks are reused, not added.

    Acts on this process (``mallopt``) and, through the environment, on the worker processes it
    starts. Returns False, changing nothing, without glibc or when the environment already sets
    ``MALLOC_MMAP_THRESHOLD_`` (glibc has then applied the user's value).
    """
    if ALLOCATOR_ENV[0] in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    if not libc.mallopt(M_MMAP_THRESHOLD, threshold):
        return False
    os.environ[ALLOCATOR_ENV[0]] = str(threshold)
    if ALLOCATOR_ENV[1] not in os.environ and libc.mallopt(M_TRIM_THRESHOLD, 2 * threshold):
        os.environ[ALLOCATOR_ENV[1]] = str(2 * threshold)
    return True
