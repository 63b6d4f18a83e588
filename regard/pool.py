"""Translating with several single-threaded processes at once (``--workers``).

A decoder step is dozens of small operators on a (batch × hidden) state. Two threads in one
process barely beat one on them (int8 greedy search of test_2016_flickr: about 840 against 760
sentences/s), because the threads must meet at every operator. Marian's CPU decoder runs one
single-threaded worker per core on different batches instead, and so does this pool:

* each worker process loads the model itself and uses one thread (``threads`` to change it);
* the main process sorts and batches the sentences exactly as :class:`Translator` does, and puts
  the batches on one queue, longest work first; an idle worker takes the next batch;
* the translations come back in input order, the same as one process gives for the same batches.

>>> with TranslatorPool.load("runs/demo/model", workers=2) as pool:  # doctest: +SKIP
...     pool.translate(["the black cat ate the mouse"], beam=5)[0].text
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Sequence

import torch

from regard.errors import RegardError
from regard.config import Config
from regard.translator import Translation, Translator


Paths = str | Path | Sequence[str | Path]  # a model folder, or several: an ensemble


def work(path: Paths, precision: str, device: str, threads: int, inbox: Any, outbox: Any) -> None:
    """A worker: load the model, then translate batches from ``inbox`` until ``None``."""
    torch.set_num_threads(threads)
    try:
        try:
            translator = Translator.load(path, precision=precision, device=device)
        except Exception as err:  # report it rather than die silently
            outbox.put(("ready", err))
            return
        outbox.put(("ready", None))
        while (job := inbox.get()) is not None:
            key, texts, options = job
            try:
                outbox.put((key, translator.translate_nbest(texts, batch_size=len(texts), **options)))
            except Exception as err:
                outbox.put((key, err))
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal: the main one reports it
        return


class TranslatorPool:
    """:class:`Translator`'s ``translate`` and ``translate_nbest``, run by ``workers`` processes.

    Use it as a context manager, or call :meth:`close`; the workers also end with the program.
    """

    def __init__(self, translator: Translator, processes: list, inbox: Any, outbox: Any):
        self.translator = translator  # the main process's copy: configuration, tokenizer, empty lines
        self.processes, self.inbox, self.outbox = processes, inbox, outbox

    @classmethod
    def load(cls, path: Paths, precision: str = "fp32", workers: int = 2, device: str = "auto",
             threads: int = 1) -> TranslatorPool:
        """Start ``workers`` processes of ``threads`` PyTorch threads, each loading the model at ``path``
        (several: an ensemble) onto ``device`` (as :meth:`Translator.load`); return once all are ready."""
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be at least 1, got {workers} and {threads}")
        translator = Translator.load(path, precision=precision, device=device)  # fails here, clearly
        ctx = mp.get_context("spawn")
        inbox, outbox = ctx.Queue(), ctx.Queue()
        path = str(path) if isinstance(path, (str, Path)) else [str(p) for p in path]
        processes = [ctx.Process(target=work, args=(path, precision, device, threads, inbox, outbox),
                                 daemon=True) for _ in range(workers)]
        for process in processes:
            process.start()
        pool = cls(translator, processes, inbox, outbox)
        try:
            for _ in processes:
                _, err = pool._receive()
                if err is not None:
                    raise RegardError(f"a translation worker could not load {path}: {err}")
        except BaseException:
            pool.close()
            raise
        return pool

    @property
    def cfg(self) -> Config:
        return self.translator.cfg

    @property
    def has_attention(self) -> bool:
        return self.translator.has_attention

    @property
    def attention_from(self) -> str | None:
        return self.translator.attention_from

    @property
    def device(self) -> torch.device:
        """Where the workers run the model (the main process's copy is on the same device)."""
        return self.translator.device

    def translate(self, texts: list[str], beam: int | None = None, **options) -> list[Translation]:
        """Best translation of each text (options as :meth:`Translator.translate_nbest`)."""
        return [hyps[0] for hyps in self.translate_nbest(texts, beam=beam, nbest=1, **options)]

    def translate_nbest(self, texts: list[str], beam: int | None = None, nbest: int = 1,
                        batch_size: int = 128, **options) -> list[list[Translation]]:
        """As :meth:`Translator.translate_nbest`, with the batches shared among the workers."""
        self._check_workers()
        batches = self.translator.batches(texts, batch_size)
        for key in reversed(range(len(batches))):  # the longest sentences first: no long batch comes last
            self.inbox.put((key, [texts[i] for i in batches[key]], {"beam": beam, "nbest": nbest, **options}))
        results: list[list[Translation] | None] = [None] * len(texts)
        errors = []
        for _ in batches:  # every answer, errors included, so that the next call starts clean
            key, found = self._receive()
            if isinstance(found, Exception):
                errors.append(found)
                continue
            for i, hyps in zip(batches[key], found):
                results[i] = hyps
        if errors:
            raise errors[0]
        for i, hyps in enumerate(results):
            if hyps is None:  # an empty line: no work for a worker
                results[i] = self.translator.translate_nbest([texts[i]], beam=beam, nbest=nbest, **options)[0]
        return results  # type: ignore[return-value]

    def _receive(self) -> tuple[Any, Any]:
        """The next message from a worker; a clear error if one has died instead."""
        while True:
            try:
                return self.outbox.get(timeout=1.0)
            except queue.Empty:
                self._check_workers()

    def _check_workers(self) -> None:
        """Close the pool and raise if a worker has died (it may have left the queue locked)."""
        if not self.processes:
            raise RegardError("this translation pool is closed")
        dead = [p.exitcode for p in self.processes if not p.is_alive()]
        if dead:
            self.close()
            raise RegardError(f"a translation worker died (exit code {dead[0]})")

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for process in self.processes:
            if process.is_alive():
                self.inbox.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self.processes = []

    def __enter__(self) -> TranslatorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_translator(path: Paths, precision: str = "fp32", workers: int = 1, device: str = "auto",
                    threads: int = 1) -> AbstractContextManager[Translator | TranslatorPool]:
    """A :class:`Translator` for ``workers`` = 1 (``threads`` unused: this process keeps its own),
    else a :class:`TranslatorPool` of ``threads`` per worker; use with ``with``."""
    if workers == 1:
        return nullcontext(Translator.load(path, precision=precision, device=device))
    return TranslatorPool.load(path, precision, workers, device, threads)  # ValueError below 1
