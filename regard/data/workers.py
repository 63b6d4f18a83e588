"""A function over chunks of work on every core, results in order, memory bounded.

:func:`ordered_map` runs the first chunks in this process, and only when there are more
starts worker processes (``spawn``: nothing of this process is inherited, torch's threads
included), keeping at most two chunks a worker in flight: the input is read no faster than
the workers finish it. The results come back in input order, so they are the same for any
number of processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from itertools import chain, islice
from typing import Any, Callable, Iterable, Iterator

_WORK: list[Callable[[Any], Any]] = []  # in a worker process only: the function it applies (set by _start)


def _start(fn: Callable[[Any], Any]) -> None:
    _WORK[:] = [fn]


def _apply(item: Any) -> Any:
    return _WORK[0](item)


def default_processes() -> int:
    """Worker processes to use: one per core."""
    return os.cpu_count() or 1


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], processes: int | None = None,
                inline: int = 2) -> Iterator[Any]:
    """``fn(item)`` for each item, in order: the first ``inline`` here, the rest (if any) on
    ``processes`` worker processes (default: one per core; 0 or 1 = all here). ``fn`` must
    pickle (a module-level function or a picklable callable object)."""
    items = iter(items)
    head = list(islice(items, inline))
    for item in head:
        yield fn(item)
    first = next(items, None)
    if first is None:
        return
    processes = default_processes() if processes is None else processes
    rest = chain([first], items)
    if processes <= 1:
        yield from map(fn, rest)
        return
    with mp.get_context("spawn").Pool(processes, initializer=_start, initargs=(fn,)) as pool:
        pending: deque = deque()
        for item in rest:
            pending.append(pool.apply_async(_apply, (item,)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
