"""A DDP communication hook for ranks on one machine: gradients averaged through shared memory.

gloo averages gradients over TCP, even between processes on the same machine: 35 ms per
10M-value all-reduce on the 2-core benchmark machine, about a tenth of a training step of
the benchmark model (docs/PERFORMANCE.md). When every rank is on this machine, they can
instead meet in a shared-memory file: each rank copies its bucket of gradients into its
own slot, waits at a barrier (one tiny gloo collective), and sums all the slots in rank
order into its bucket. Every rank then holds bit-identical gradients, as with all-reduce.

Slots are double-buffered by call parity: a rank can only reach call k + 1, which reuses
the slots of call k - 1, after every rank has passed the barrier of call k, that is after
every rank has finished reading call k - 1's slots.
"""

import os
import tempfile
import uuid
from pathlib import Path

import torch
import torch.distributed as dist


class SharedMemoryReducer:
    """The hook's state: one shared (2, world, n) tensor per bucket, mapped from a file."""

    def __init__(self, rank: int, world: int, token: str):
        self.rank, self.world, self.token = rank, world, token
        self.slots: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}
        self.calls: dict[tuple[int, int, torch.dtype], int] = {}
        shm = Path("/dev/shm")
        self.folder = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())

    @classmethod
    def create(cls, rank: int, world: int) -> "SharedMemoryReducer":
        """Every rank's reducer, sharing rank 0's file names (a collective call)."""
        box = [uuid.uuid4().hex if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return cls(rank, world, box[0])

    def buffers(self, key: tuple[int, int, torch.dtype]) -> torch.Tensor:
        """The slots of bucket ``key``, mapped by every rank, the file unlinked once all have it."""
        if key not in self.slots:
            index, n, dtype = key
            path = self.folder / f"regard-grads-{self.token}-{index}-{n}-{str(dtype).split('.')[-1]}"
            self.slots[key] = torch.from_file(str(path), shared=True, size=2 * self.world * n,
                                              dtype=dtype).view(2, self.world, n)
            self.calls[key] = 0
            dist.barrier()  # all have mapped it: the name is no longer needed
            if self.rank == 0:
                path.unlink(missing_ok=True)
        return self.slots[key]

    def average(self, index: int, grads: torch.Tensor) -> torch.Tensor:
        """Replace ``grads`` (bucket ``index``, flat) by its mean over the ranks, in place."""
        key = (index, grads.numel(), grads.dtype)
        slots = self.buffers(key)[self.calls[key] % 2]
        self.calls[key] += 1
        slots[self.rank].copy_(grads)
        dist.barrier()  # every rank's gradients are in its slot
        torch.sum(slots, dim=0, out=grads)  # the same order, so the same sums, on every rank
        return grads.div_(self.world)


def shared_memory_hook(state: SharedMemoryReducer, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: average ``bucket`` through ``state``'s shared memory (DDP checks these
    annotations, so this module does not postpone them)."""
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(state.average(bucket.index(), bucket.buffer()))
    return future
