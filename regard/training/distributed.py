"""Training with several processes, on one machine or many: torch.distributed.

Every process (a *rank*) runs the same training loop on its own share of each global
batch; :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so
every rank takes the same optimizer step. Ranks are told who they are through the
environment contract of ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; SLURM's ``srun`` can set the same).
``train.workers: N`` on one machine starts N - 1 more processes with that contract
(:class:`LocalRanks`), the calling process being rank 0: the same code path as torchrun's.

Only rank 0 writes checkpoints, logs and the progress display; decisions that end training
(a time limit, early stopping, Ctrl-C or SIGTERM on any rank) are agreed on by all ranks at
the end of every step (:func:`agree`), so no rank is left waiting for another.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import sys
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist

from regard.errors import Interrupted, RegardError

TIMEOUT = timedelta(minutes=60)  # the longest a rank waits for the others (rank 0 validating)


@dataclass(frozen=True)
class Ranks:
    """Who this process is among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    master: tuple[str, int] = ("127.0.0.1", 0)  # MASTER_ADDR, MASTER_PORT
    attempt: int = 0  # TORCHELASTIC_RESTART_COUNT: 0, then 1, 2, ... after each restart
    agent_store: bool = False  # torchrun's agent serves the store (TORCHELASTIC_USE_AGENT_STORE)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Ranks:
        """torchrun's environment contract; one process when it is absent."""
        try:
            world = int(env.get("WORLD_SIZE", 1))
            rank, local_rank = int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0))
            local_world = int(env.get("LOCAL_WORLD_SIZE", world))
            master = (env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 0)))
            attempt = int(env.get("TORCHELASTIC_RESTART_COUNT", 0) or 0)
        except ValueError:
            raise RegardError("RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and MASTER_PORT must be integers"
                              ) from None
        if world > 1 and not ("MASTER_ADDR" in env and "MASTER_PORT" in env):
            raise RegardError("WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT (start the job with torchrun)")
        return cls(rank, world, local_rank, local_world, master, attempt,
                   env.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


def launched(env: Mapping[str, str] = os.environ) -> bool:
    """True in a process started by torchrun (or by :class:`LocalRanks`)."""
    return int(env.get("WORLD_SIZE", 1)) > 1


def restarted(env: Mapping[str, str] = os.environ) -> bool:
    """True when torchrun has restarted the job after a failure (``--max-restarts``)."""
    return int(env.get("TORCHELASTIC_RESTART_COUNT", 0) or 0) > 0


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    """Join the other ranks: NCCL between CUDA devices, gloo otherwise.

    The rendezvous store is torchrun's agent's when it offers one, else served by rank 0. Its
    keys are prefixed with the attempt number: a job torchrun restarts meets the same store,
    and must not read the addresses its killed predecessors left there (it would wait forever).
    """
    if ranks.world > 1:
        host, port = ranks.master
        store = dist.TCPStore(host, port, ranks.world, is_master=ranks.is_main and not ranks.agent_store,
                              timeout=TIMEOUT)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.PrefixStore(f"regard/attempt-{ranks.attempt}", store),
                                rank=ranks.rank, world_size=ranks.world, timeout=TIMEOUT)


def close_process_group(wait_for_all: bool = False) -> None:
    """Leave the process group (``wait_for_all``: once every rank has come to leave it too,
    so that no rank tears down its connections while another still uses them)."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def agree(values: list[float], device: torch.device) -> list[float]:
    """The sum of ``values`` over all ranks (each rank its own as is, alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64 if device.type != "mps" else torch.float32, device=device)
    dist.all_reduce(t)
    return t.tolist()


def from_main(obj: Any) -> Any:
    """Rank 0's ``obj``, on every rank (a picklable object)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, target: Callable[..., Any], args: tuple, errors: Any) -> None:
    """A process that :class:`LocalRanks` starts: set torchrun's environment, run ``target``."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        target(*args)
    except (Interrupted, KeyboardInterrupt):
        pass  # rank 0 says so
    except RegardError as err:  # its message names the rank
        errors.put(str(err))
        raise SystemExit(2) from None
    except BaseException:  # noqa: BLE001 - reported to rank 0, which raises it
        errors.put(f"[rank {rank}] {traceback.format_exc().rstrip()}")
        raise SystemExit(1) from None
    else:
        # done, and its process group left: skip the interpreter's teardown, where a C++ thread
        # left behind by gloo or the TCP store can abort the process ("terminate called without
        # an active exception", exit code -6) after the work has succeeded
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class LocalRanks:
    """Ranks 1 … N-1 of a one-machine job as child processes; this process is rank 0.

    ``with LocalRanks(n, target, args) as ranks:`` runs the body as rank 0; each child calls
    ``target(*args)`` with torchrun's environment set. If a child fails, the error rank 0 sees
    (a lost connection) is replaced by the child's own message; on leaving, children still
    running get a few seconds, then are killed, so nothing is left behind.
    """

    def __init__(self, n: int, target: Callable[..., Any], args: tuple):
        self.n, self.port = n, free_port()
        ctx = mp.get_context("spawn")
        self.errors = ctx.Queue()
        self.children = [ctx.Process(target=_rank_main, args=(r, n, self.port, target, args, self.errors),
                                     daemon=True) for r in range(1, n)]

    def __enter__(self) -> Ranks:
        for child in self.children:
            child.start()
        return Ranks(0, self.n, 0, self.n, ("127.0.0.1", self.port))

    def __exit__(self, kind, err, tb) -> None:
        for child in self.children:
            child.join(timeout=30 if kind is None else 5)
        for child in self.children:
            if child.is_alive():
                child.kill()
                child.join()
        failure = self.failure()
        if failure and not isinstance(err, (RegardError, Interrupted, KeyboardInterrupt)):
            raise RegardError(failure) from None  # rank 0's own error is the cause, if it has one

    def failure(self) -> str | None:
        """What the first child that failed said, or how it died."""
        try:
            return self.errors.get(timeout=0.5 if any(c.exitcode for c in self.children) else 0.01)
        except Exception:  # noqa: BLE001 - queue.Empty, or a queue broken by a killed child
            dead = [(r, c.exitcode) for r, c in enumerate(self.children, 1) if c.exitcode not in (0, None)]
            return f"training process {dead[0][0]} died (exit code {dead[0][1]}; out of memory?)" if dead else None
