"""A function over chunks of work on every core, results in order, memory bounded.

:func:`ordered_map` runs the first chunks in this process and, only when there are more,
starts worker processes as fresh interpreters (``python -c``, with this process's
``sys.path``): nothing of this process is inherited, neither torch's threads nor its main
module, so it works from any script, guarded by ``if __name__ == "__main__"`` or not.
Chunk ``k`` goes to worker ``k mod P`` and every worker holds at most two chunks, so the
input is read no faster than the workers finish it, and the results come back in input
order: the same for any number of processes.

A worker reads pickles from its stdin (the path, the function, then one item after
another) and writes ``("ok", result)`` or ``("error", exception)`` pickles to its stdout.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from regard.errors import RegardError

_BOOT = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
         "from regard.data.workers import serve; serve()")
_END = object()  # tells a feeding thread that there is no more input
IN_FLIGHT = 2  # chunks a worker holds at most


def default_processes() -> int:
    """Worker processes to use: one per core."""
    return os.cpu_count() or 1


def serve() -> None:
    """The loop of a worker process (see the module's docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    inbox, outbox = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the results
    fn = pickle.load(inbox)
    while True:
        try:
            item = pickle.load(inbox)
        except EOFError:
            return
        try:
            result = ("ok", fn(item))
        except Exception as err:  # noqa: BLE001 - sent to the parent, which raises it
            result = ("error", err)
        pickle.dump(result, outbox, protocol=pickle.HIGHEST_PROTOCOL)
        outbox.flush()


class Worker:
    """One worker process, fed by a thread of its own (so that sending never blocks the caller)."""

    def __init__(self, fn: Callable[[Any], Any]):
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.inbox: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._feed, args=(sys.path, fn), daemon=True)
        self.thread.start()

    def _feed(self, *first: Any) -> None:
        try:
            for obj in first:
                pickle.dump(obj, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            while (item := self.inbox.get()) is not _END:
                pickle.dump(item, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                self.proc.stdin.flush()
            self.proc.stdin.close()
        except OSError:  # the worker has gone: reading its result says so
            pass

    def put(self, item: Any) -> None:
        self.inbox.put(item)

    def result(self) -> Any:
        """The result of the oldest item sent; an exception the function raised is raised here."""
        try:
            kind, value = pickle.load(self.proc.stdout)
        except (EOFError, pickle.UnpicklingError):
            raise RegardError(f"a data worker process died (exit code {self.proc.wait()}; out of memory?)") from None
        if kind == "error":
            raise value
        return value

    def close(self, wait: bool = True) -> None:
        """End the worker: let it finish (``wait``), else kill it."""
        self.inbox.put(_END)
        try:
            self.proc.wait(timeout=10 if wait else 0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], processes: int | None = None,
                inline: int = 2) -> Iterator[Any]:
    """``fn(item)`` for each item, in order: the first ``inline`` here, the rest (if any) on
    ``processes`` worker processes (default: one per core; 0 or 1 = all here). ``fn`` must
    pickle (a module-level function or a picklable callable object of an importable module)."""
    items = iter(items)
    for item in islice(items, inline):
        yield fn(item)
    first = next(items, _END)
    if first is _END:
        return
    processes = default_processes() if processes is None else processes
    if processes <= 1:
        yield fn(first)
        yield from map(fn, items)
        return
    workers = [Worker(fn) for _ in range(processes)]
    done = False
    try:
        pending: deque[int] = deque()
        for k, item in enumerate(_chain(first, items)):
            if len(pending) == IN_FLIGHT * processes:  # the oldest chunk is then worker k mod P's
                yield workers[pending.popleft() % processes].result()
            workers[k % processes].put(item)
            pending.append(k)
        while pending:
            yield workers[pending.popleft() % processes].result()
        done = True
    finally:
        for worker in workers:
            worker.close(wait=done)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
