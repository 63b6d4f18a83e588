#!/usr/bin/env python3
"""Soak benchmark of ``regard serve`` under its limits (not a test).

Starts ``regard serve`` (default settings) in a subprocess on a free loopback port, then for
``--seconds`` seconds drives, each in its own thread:

- ``--small-clients`` clients sending one short sentence at a time (the model's default beam);
- ``--limit-clients`` clients cycling through requests at every limit: the most work, the
  longest text, the largest response, the most texts (each just within its limit, found with
  the server's own estimate, :mod:`regard.serving.budget`), the request of issue 19 (far over:
  a 413) and a text one character too long (a 422);
- ``--drop-clients`` clients sending work-limit requests and hanging up after 50 ms.

It prints the small requests' p50/p99 latency, every status per kind of request, the server's
peak resident memory, and whether any request got a 500. Targets: small p99 under 1 s, zero
500s, memory bounded.

    .venv/bin/python scripts/soak_bench.py --model runs/demo/model --seconds 60
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx

from load_bench import free_port, percentile, start_server
from regard.data.grammar import generate
from regard.serving.budget import MB, estimate
from regard.serving.models import parse_model_spec
from regard.serving.settings import ServeSettings
from regard.translator import Translator


def largest(hi: int, fits: Callable[[int], bool]) -> int:
    """The largest n in 1..hi with ``fits(n)`` (a predicate true up to some n), or 0."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def within(translator: Translator, s: ServeSettings, body: dict) -> bool:
    """Whether ``body`` is within the work and response limits (as the server will estimate it)."""
    texts = body.get("texts") or [body["text"]]
    cost = estimate(translator, texts, body["beam"], body.get("nbest", 1), body.get("heads", False), s.max_call_work)
    return cost.total_work <= s.max_work and cost.response_bytes <= s.max_response_mb * MB


def limit_bodies(translator: Translator, s: ServeSettings, sentences: list[str]) -> dict[str, dict]:
    """One request per limit, each just within it (the ``issue`` and ``too-long`` ones are over)."""
    prose = " ".join(sentences)
    sentence = max(sentences[:50], key=len)
    heads = translator.cfg.model.arch == "transformer"
    work = lambda n: {"texts": [sentence] * n, "beam": s.max_beam}  # noqa: E731
    long = lambda n: {"text": prose[:n].strip(), "beam": 1}  # noqa: E731
    response = lambda n: {"texts": [sentence] * n, "beam": s.max_beam, "nbest": s.max_beam,  # noqa: E731
                          "heads": heads}
    many = lambda n: {"texts": sentences[:n], "beam": 1}  # noqa: E731
    bodies = {}
    for kind, make, hi in (("work", work, s.max_texts), ("long", long, s.max_chars),
                           ("response", response, s.max_texts), ("texts", many, s.max_texts)):
        n = largest(hi, lambda n: within(translator, s, make(n)))
        if n:
            bodies[kind] = make(n)
        else:
            print(f"  (no '{kind}' request fits the limits with this model)", file=sys.stderr)
    bodies["issue"] = {"texts": [("cat " * 250)[:1000]] * 64, "beam": 10, "nbest": 10}
    bodies["too-long"] = {"text": "a" * (s.max_chars + 1)}
    return bodies


class Tally:
    """Latencies and statuses per kind of request, from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.rss_mb: list[float] = []  # the server's, sampled

    def add(self, kind: str, status: str, seconds: float) -> None:
        with self.lock:
            self.status[kind][status] += 1
            if status == "200":
                self.latency[kind].append(seconds)


def client(base: str, requests: list[tuple[str, dict]], stop_at: float, tally: Tally, seed: int,
           timeout: float = 60) -> None:
    """Send random (kind, body) ``requests``, back to back, until ``stop_at``; a timeout under 1 s
    hangs up on purpose."""
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=timeout) as http:
        while time.monotonic() < stop_at:
            kind, body = rng.choice(requests)
            started = time.perf_counter()
            try:
                response = http.post("/api/translate", json=body)
                status = str(response.status_code)
            except httpx.TimeoutException:
                status = "hung up" if timeout < 1 else "timeout"
            except httpx.TransportError as err:
                status = type(err).__name__
            tally.add(kind, status, time.perf_counter() - started)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def drive(args: argparse.Namespace, base: str, bodies: dict[str, dict], sentences: list[str], pid: int) -> Tally:
    tally = Tally()
    stop_at = time.monotonic() + args.seconds
    small = [("small", {"text": t}) for t in sentences[:200]]
    threads = [threading.Thread(target=client, args=(base, small, stop_at, tally, i))
               for i in range(args.small_clients)]
    threads += [threading.Thread(target=client, args=(base, list(bodies.items()), stop_at, tally, 100 + i))
                for i in range(args.limit_clients)]
    if "work" in bodies:
        threads += [threading.Thread(target=client, args=(base, [("hung up", bodies["work"])], stop_at, tally,
                                                          200 + i, 0.05))
                    for i in range(args.drop_clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        tally.rss_mb.append(rss_mb(pid))
        time.sleep(0.5)
    for t in threads:
        t.join()
    return tally


def report(args: argparse.Namespace, tally: Tally, peak: float, health: dict) -> bool:
    print(f"regard serve soak: {args.seconds:g} s, model {args.model}, {args.small_clients} small + "
          f"{args.limit_clients} limit-sized + {args.drop_clients} hanging-up clients, {os.cpu_count()} CPUs")
    small = sorted(tally.latency["small"])
    if small:
        ms = [1000 * x for x in small]
        print(f"  small requests  {len(ms)} ok   p50 {percentile(ms, 50):.0f} ms   p99 {percentile(ms, 99):.0f} ms   "
              f"max {ms[-1]:.0f} ms")
    for kind in sorted(tally.status):
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(tally.status[kind].items()))
        times = tally.latency[kind]
        median = f"   median ok {1000 * statistics.median(times):.0f} ms" if times and kind != "small" else ""
        print(f"  {kind:15s} {counts}{median}")
    print(f"  server memory   peak {peak:.0f} MB resident ({min(tally.rss_mb, default=0):.0f}–"
          f"{max(tally.rss_mb, default=0):.0f} MB as sampled every 0.5 s)")
    print(f"  server          {health['requests']} requests translated in {health['batches']} model calls")
    errors = sum(n for c in tally.status.values() for status, n in c.items() if status.startswith("5")
                 and status != "503")
    p99 = percentile([1000 * x for x in small], 99) if small else float("inf")
    print(f"  zero 500s       {'yes' if errors == 0 else f'NO: {errors}'}")
    print(f"  small p99 < 1 s {'yes' if p99 < 1000 else 'no'}")
    return errors == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/demo/model", help="[NAME=]DIR of the model to serve")
    parser.add_argument("--seconds", type=float, default=60, help="how long to drive the load (default 60)")
    parser.add_argument("--small-clients", type=int, default=8, help="clients sending short sentences (default 8)")
    parser.add_argument("--limit-clients", type=int, default=3, help="clients sending limit-sized requests (default 3)")
    parser.add_argument("--drop-clients", type=int, default=1, help="clients hanging up on work-limit requests "
                        "(default 1)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="server's batching window (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="server's PyTorch threads (default: all cores)")
    args = parser.parse_args()
    folder = parse_model_spec(args.model)[1]
    if not Path(folder).exists():
        raise SystemExit(f"no model at {folder}: run 'make demo' first or pass --model DIR")
    if not (0 < args.seconds <= 3600):
        raise SystemExit("--seconds must be 0..3600")

    settings = ServeSettings()
    sentences = [pair.en for pair in generate(500, seed=7)]
    bodies = limit_bodies(Translator.load(folder, device="cpu"), settings, sentences)
    port = free_port()
    log = tempfile.NamedTemporaryFile("w", prefix="regard-serve-", suffix=".log", delete=False)
    server = start_server(args, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        for kind, body in bodies.items():
            texts = body.get("texts") or [body["text"]]
            print(f"  {kind:15s} {len(texts)} texts of up to {max(map(len, texts))} characters, beam "
                  f"{body.get('beam', 'default')}, nbest {body.get('nbest', 1)}"
                  f"{', heads' if body.get('heads') else ''}")
        tally = drive(args, base, bodies, sentences, server.pid)
        health = httpx.get(f"{base}/api/health", timeout=30).json()
        peak = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    if not report(args, tally, peak, health):
        raise SystemExit(f"server log: {log.name}")
    os.unlink(log.name)


if __name__ == "__main__":
    main()
