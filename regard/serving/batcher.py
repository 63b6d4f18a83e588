"""Dynamic batching with bounded model calls: concurrent requests share calls, long ones are split.

Requests wait in a queue for a few milliseconds; one worker thread then plans each model
call: the job with the least work left leads (or, every other call, the oldest job once it
is past half its deadline), and its next texts (shortest output first), plus those of other
jobs with the same (model, beam, nbest, heads), fill the call up to
``call_work`` subword steps and ``max_texts`` texts; one text is never split. A call also
costs ``step_work`` per decoding step of its longest text (:class:`CallSize`), which is
what splitting adds to a request's work. A long request thus becomes several
calls, and a short request that arrives meanwhile waits for one call at most, not for the
whole long one. A job past its deadline, or cancelled (its caller has gone), is dropped
with its texts not yet computed. The queue holds at most ``max_queue`` texts.

All model work happens on that single thread (PyTorch inference is not meant to run
concurrently on the same model), and callers only ever await a future, so the event loop
never blocks on the model.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from regard.translator import Translation, Translator

Key = tuple[str, int, int, bool]  # (model name, beam, nbest, heads)


class JobDropped(Exception):
    """A job dropped before all its texts were translated."""


class DeadlinePassed(JobDropped):
    """The job's deadline passed before its translations were all done."""


class QueueFull(Exception):
    """The queue has no room for a job's texts."""


@dataclass
class CallSize:
    """The work of a model call as texts join it: theirs, plus ``step_work`` for each decoding step
    of the longest (a step's cost that does not grow with its rows: the weights are read once)."""

    step_work: int = 0
    work: int = 0
    steps: int = 0
    texts: int = 0

    def total(self, work: int = 0, steps: int = 0) -> int:
        """The call's work, with one more text of ``work`` and ``steps`` if given."""
        return self.work + work + self.step_work * max(self.steps, steps)

    def fits(self, work: int, cap: float) -> bool:
        """Whether a text of ``work`` may join a call whose texts' work is capped at ``cap`` (the first
        always may; the steps' share is left out, or long texts could never share a call)."""
        return self.texts == 0 or self.work + work <= cap

    def add(self, work: int, steps: int) -> None:
        self.work += work
        self.steps = max(self.steps, steps)
        self.texts += 1


def split(work: list[int], steps: list[int], cap: float, step_work: int) -> list[CallSize]:
    """The calls a job alone becomes: its texts by output length, each call filled up to ``cap``."""
    calls = [CallSize(step_work)]
    for i in sorted(range(len(work)), key=steps.__getitem__):
        if not calls[-1].fits(work[i], cap):
            calls.append(CallSize(step_work))
        calls[-1].add(work[i], steps[i])
    return calls


@dataclass(eq=False)
class Job:
    """One request's texts, translated in one or more model calls."""

    key: Key
    texts: list[str]
    work: list[int]  # per text, in subword steps (see regard.serving.budget)
    steps: list[int]  # per text, the most decoding steps it may take
    deadline: float = math.inf  # time.monotonic() after which the job is dropped
    seq: int = 0  # arrival order, to break ties
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    todo: deque[int] = field(default_factory=deque)  # texts not yet in a model call, shortest output first
    results: list[Any] = field(default_factory=list)
    work_left: int = 0
    done: int = 0  # texts translated

    def __post_init__(self) -> None:
        self.todo = deque(sorted(range(len(self.texts)), key=self.steps.__getitem__))
        self.results = [None] * len(self.texts)
        self.work_left = sum(self.work)

    def result(self, timeout: float | None = None) -> list[list[Translation]]:
        return self.future.result(timeout)


@dataclass
class BatchStats:
    """Counters for /api/health and the tests: how much batching and dropping happened."""

    requests: int = 0  # requests fully translated
    batches: int = 0  # model calls
    largest_batch: int = 0  # most requests served by one model call
    dropped: int = 0  # jobs dropped (deadline passed or cancelled)


@dataclass
class Call:
    """One planned model call: parts of jobs that share a key."""

    key: Key
    parts: list[tuple[Job, list[int]]]

    @property
    def texts(self) -> list[str]:
        return [job.texts[i] for job, indices in self.parts for i in indices]


class Batcher:
    """Queue of translation jobs served by one worker thread, started on first use."""

    def __init__(self, models: dict[str, Translator], wait_s: float = 0.005, max_texts: int = 256,
                 call_work: float = math.inf, step_work: int = 0, max_queue: float = math.inf):
        self.models = models
        self.wait_s = wait_s
        self.max_texts = max_texts
        self.call_work = call_work
        self.step_work = step_work
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._jobs: list[Job] = []  # unfinished, in arrival order
        self._queued_texts = 0  # texts of those jobs not yet in a model call
        self._seq = count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._last_call = -math.inf  # time.monotonic() at the end of the last model call
        self._urgent_turn = False  # whether the next call may go to an urgent job (every other one)

    async def translate(self, model: str, texts: list[str], beam: int, nbest: int, heads: bool = False,
                        work: list[int] | None = None, steps: list[int] | None = None,
                        deadline: float = math.inf) -> list[list[Translation]]:
        """The ``nbest`` best translations of each text (with every head's attention for ``heads``),
        computed in shared, bounded calls; cancelling the awaiting task drops the job."""
        job = self.submit(model, texts, beam, nbest, heads, work, steps, deadline)
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def submit(self, model: str, texts: list[str], beam: int, nbest: int, heads: bool = False,
               work: list[int] | None = None, steps: list[int] | None = None, deadline: float = math.inf) -> Job:
        """Queue a job (per text, its ``work`` and most decoding ``steps``: 1 and 0 by default); its
        future resolves to one list of hypotheses per text. Raises :class:`QueueFull` when the queue
        has no room for it."""
        if model not in self.models:
            raise KeyError(model)
        with self._cond:
            if self._queued_texts + len(texts) > self.max_queue:
                raise QueueFull(f"{self._queued_texts} texts are queued; the limit is {self.max_queue}")
            job = Job((model, beam, nbest, heads), list(texts), list(work or [1] * len(texts)),
                      list(steps or [0] * len(texts)), deadline, next(self._seq))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="regard-batcher", daemon=True)
                self._thread.start()
            self._jobs.append(job)
            self._queued_texts += len(texts)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Drop ``job`` now, with its texts not yet in a model call (a call running keeps going, its
        results for the job thrown away)."""
        with self._cond:
            self._finish(job)

    @property
    def pending(self) -> int:
        """Jobs not finished yet (queued, or with texts still in a model call)."""
        return len(self._jobs)

    @property
    def queued_texts(self) -> int:
        """Texts waiting for a model call."""
        return self._queued_texts

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker (a later submit restarts it)."""
        with self._cond:
            thread, self._stop = self._thread, True
            self._cond.notify()
        if thread is not None:
            thread.join()
        with self._cond:
            self._thread, self._stop = None, False

    def _work(self) -> None:
        while (call := self._next_call()) is not None:
            if call.parts:
                self._run(call)

    def _next_call(self) -> Call | None:
        """Wait for work (then ``wait_s`` more, for concurrent requests to join), and plan a call."""
        with self._cond:
            while True:
                self._drop_expired()
                if self._jobs:
                    break
                if self._stop:
                    return None
                self._cond.wait()
            first = min(job.arrived for job in self._jobs)
            if first >= self._last_call:  # the worker was idle when it came: let others join it
                until = first + self.wait_s
                while not self._stop and self._queued_texts < self.max_texts and (left := until - time.monotonic()) > 0:
                    self._cond.wait(left)
                self._drop_expired()
            return self._plan() if self._jobs else Call(("", 0, 0, False), [])  # all dropped: wait again

    def _drop_expired(self) -> None:
        """Drop the jobs whose future was cancelled, or past their deadline (with the lock held)."""
        now = time.monotonic()
        for job in [j for j in self._jobs if j.future.cancelled() or now >= j.deadline]:
            self._finish(job, None if job.future.cancelled() else DeadlinePassed())

    def _lead(self) -> Job:
        """The job the next call is for: the one with the least work left, except that every other
        call goes to the oldest job once it is past half its deadline (so that it can still make it)."""
        self._urgent_turn = not self._urgent_turn
        oldest = min(self._jobs, key=lambda j: j.seq)
        if self._urgent_turn and time.monotonic() >= (oldest.arrived + oldest.deadline) / 2:
            return oldest
        return min(self._jobs, key=lambda j: (j.work_left, j.seq))

    def _plan(self) -> Call:
        """The next call: its lead job's next texts, then other jobs' with the same key, least work left first."""
        lead = self._lead()
        call, size = Call(lead.key, []), CallSize(self.step_work)
        for job in sorted((j for j in self._jobs if j.key == lead.key),
                          key=lambda j: (j is not lead, j.work_left, j.seq)):
            if not job.todo or not (job.future.running() or job.future.set_running_or_notify_cancel()):
                continue  # in a call already, or cancelled (dropped on the next look at the queue)
            taken = []
            while job.todo and size.texts < self.max_texts and size.fits(job.work[job.todo[0]], self.call_work):
                taken.append(job.todo.popleft())
                size.add(job.work[taken[-1]], job.steps[taken[-1]])
            if taken:
                call.parts.append((job, taken))
                job.work_left -= sum(job.work[i] for i in taken)
                self._queued_texts -= len(taken)
            if size.texts >= self.max_texts or size.work >= self.call_work:
                break
        return call

    def _run(self, call: Call) -> None:
        """One model call; its results go back to each job, which resolves once all its texts are done."""
        model, beam, nbest, heads = call.key
        try:
            extra = {"heads": True} if heads else {}  # every head's attention only when asked for
            found = self.models[model].translate_nbest(call.texts, beam=beam, nbest=nbest, **extra)
        except Exception as err:  # noqa: BLE001 - handed to every waiting caller
            with self._cond:
                self._last_call = time.monotonic()
                for job, _ in call.parts:
                    self._finish(job, err)
            return
        with self._cond:
            self._last_call = time.monotonic()
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(call.parts))
            start = 0
            for job, indices in call.parts:
                for i, hyps in zip(indices, found[start:start + len(indices)]):
                    job.results[i] = hyps
                start += len(indices)
                job.done += len(indices)
                if job.done == len(job.texts) and job in self._jobs:
                    self.stats.requests += 1
                    self._finish(job)

    def _finish(self, job: Job, error: BaseException | None = None) -> None:
        """Take ``job`` off the queue: with its results, with ``error``, or cancelled (None after
        a drop); with the lock held."""
        if job not in self._jobs:
            return
        self._jobs.remove(job)
        self._queued_texts -= len(job.todo)
        job.todo.clear()
        finished = job.done == len(job.texts) and error is None
        if not finished:
            self.stats.dropped += 1
        try:
            if finished:
                job.future.set_result(job.results)
            elif error is not None:
                job.future.set_exception(error)
            elif not job.future.cancel():
                job.future.set_exception(JobDropped("cancelled"))
        except InvalidStateError:
            pass  # cancelled by its caller meanwhile
