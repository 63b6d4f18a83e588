"""Dynamic batching: concurrent requests share one model call.

Requests wait in a queue for a few milliseconds; one worker thread then takes
everything that has arrived, groups it by (model, beam, nbest, heads), and runs one
:meth:`Translator.translate_nbest` call per group. All model work happens on
that single thread (PyTorch inference is not meant to run concurrently on the
same model), and callers only ever await a future, so the event loop never
blocks on the model.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field

from regard.translator import Translation, Translator

Key = tuple[str, int, int, bool]  # (model name, beam, nbest, heads)


@dataclass
class Job:
    """One request's texts, waiting for their translations."""

    key: Key
    texts: list[str]
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters for /api/health and the tests: how much batching happened."""

    requests: int = 0
    batches: int = 0  # model calls
    largest_batch: int = 0  # most requests served by one model call


class Batcher:
    """Queue of translation jobs served by one worker thread, started on first use."""

    def __init__(self, models: dict[str, Translator], wait_s: float = 0.005, max_texts: int = 256):
        self.models = models
        self.wait_s = wait_s
        self.max_texts = max_texts
        self.stats = BatchStats()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def translate(self, model: str, texts: list[str], beam: int, nbest: int,
                        heads: bool = False) -> list[list[Translation]]:
        """The ``nbest`` best translations of each text (with every head's attention for ``heads``),
        computed in a shared batch."""
        return await asyncio.wrap_future(self.submit(model, texts, beam, nbest, heads))

    def submit(self, model: str, texts: list[str], beam: int, nbest: int, heads: bool = False) -> Future:
        """Queue a job; the future resolves to one list of hypotheses per text."""
        if model not in self.models:
            raise KeyError(model)
        job = Job((model, beam, nbest, heads), list(texts))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="regard-batcher", daemon=True)
                self._thread.start()
            self._queue.put(job)
        return job.future

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken by the worker."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker (a later submit restarts it)."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            self._run(jobs)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """Collect jobs arriving within ``wait_s`` of the first, up to ``max_texts`` texts."""
        jobs, n_texts = [first], len(first.texts)
        deadline = time.monotonic() + self.wait_s
        while n_texts < self.max_texts:
            timeout = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n_texts += len(job.texts)
        return jobs, False

    def _run(self, jobs: list[Job]) -> None:
        """One model call per (model, beam, nbest, heads) group; results go back to each job."""
        groups: dict[Key, list[Job]] = defaultdict(list)
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                groups[job.key].append(job)
        for (model, beam, nbest, heads), group in groups.items():
            texts = [text for job in group for text in job.texts]
            try:
                extra = {"heads": True} if heads else {}  # every head's attention only when asked for
                found = self.models[model].translate_nbest(texts, beam=beam, nbest=nbest, **extra)
            except Exception as err:  # noqa: BLE001 - handed to every waiting caller
                for job in group:
                    job.future.set_exception(err)
                continue
            self.stats.requests += len(group)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(group))
            start = 0
            for job in group:
                job.future.set_result(found[start:start + len(job.texts)])
                start += len(job.texts)
