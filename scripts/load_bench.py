#!/usr/bin/env python3
"""Load benchmark of ``regard serve`` (not a test).

Starts ``regard serve`` in a subprocess on a free loopback port, then drives
``--clients`` concurrent clients, each sending one sentence at a time to
``POST /api/translate`` for ``--seconds`` seconds, and prints requests/s,
latency percentiles and the error count (the target is zero errors), plus how
many requests the dynamic batcher served per model call.

    .venv/bin/python scripts/load_bench.py --model runs/demo/model --clients 16 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

from regard.data.grammar import generate


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log: IO[str], extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """``regard serve`` (with ``extra`` options) in a subprocess, its output going to ``log``, returned
    once /api/health answers."""
    command = [sys.executable, "-m", "regard"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    command += ["serve", "--model", args.model, "--port", str(port), "--batch-wait-ms", str(args.batch_wait_ms),
                *extra]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"regard serve exited with {server.returncode}; see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("regard serve did not start within 120 s")


async def client(http: httpx.AsyncClient, sentences: list[str], body: dict, stop_at: float, seed: int,
                 latencies: list[float], errors: list[str]) -> None:
    """Send requests back to back until ``stop_at``; record latency or error of each."""
    rng = random.Random(seed)
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            response = await http.post("/api/translate", json={**body, "text": rng.choice(sentences)})
            if response.status_code == 200 and response.json()["results"][0]["hypotheses"]:
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        except (httpx.HTTPError, ValueError, KeyError) as err:
            errors.append(f"{type(err).__name__}: {err}")


async def drive(args: argparse.Namespace, base: str) -> tuple[list[float], list[str], float]:
    sentences = [pair.en for pair in generate(500, seed=7)]
    body = {"nbest": args.nbest} | ({"beam": args.beam} if args.beam else {})
    # Expire idle connections well before uvicorn's 5 s keep-alive timeout: with both at 5 s, a client
    # can reuse a connection at the instant the server closes it (a ReadError that is no server fault).
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=args.timeout, limits=limits) as http:
        for sentence in sentences[:3]:  # warm up
            (await http.post("/api/translate", json={**body, "text": sentence})).raise_for_status()
        latencies: list[float] = []
        errors: list[str] = []
        started = time.monotonic()
        stop_at = started + args.seconds
        await asyncio.gather(*(client(http, sentences, body, stop_at, seed, latencies, errors)
                               for seed in range(args.clients)))
        return latencies, errors, time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/demo/model", help="[NAME=]DIR of the model to serve")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to drive the load (default 20)")
    parser.add_argument("--beam", type=int, default=None, help="beam per request (default: the model's)")
    parser.add_argument("--nbest", type=int, default=1)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="server's batching window (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="server's PyTorch threads (default: all cores)")
    parser.add_argument("--timeout", type=float, default=30, help="per-request timeout in seconds (default 30)")
    args = parser.parse_args()
    if not Path(args.model.partition("=")[2] or args.model).exists():
        raise SystemExit(f"no model at {args.model}: run 'make demo' first or pass --model DIR")
    if not (1 <= args.clients <= 512 and 0 < args.seconds <= 600):
        raise SystemExit("--clients must be 1..512 and --seconds 0..600")

    port = free_port()
    log = tempfile.NamedTemporaryFile("w", prefix="regard-serve-", suffix=".log", delete=False)
    server = start_server(args, port, log)
    try:
        latencies, errors, elapsed = asyncio.run(drive(args, f"http://127.0.0.1:{port}"))
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    done = len(latencies)
    print(f"regard serve load benchmark: {args.clients} clients, {args.seconds:g} s, model {args.model}, "
          f"beam {args.beam or 'default'}, nbest {args.nbest}, batch wait {args.batch_wait_ms:g} ms, "
          f"{os.cpu_count()} CPUs")
    print(f"  requests ok   {done}")
    print(f"  errors        {len(errors)}")
    if done:
        ms = sorted(1000 * x for x in latencies)
        print(f"  throughput    {done / elapsed:.1f} requests/s")
        print(f"  latency ms    p50 {percentile(ms, 50):.1f}   p90 {percentile(ms, 90):.1f}   "
              f"p99 {percentile(ms, 99):.1f}   max {ms[-1]:.1f}")
    if health["batches"]:
        print(f"  batching      {health['requests']} requests in {health['batches']} model calls "
              f"({health['requests'] / health['batches']:.1f} per call)")
    for message in sorted(set(errors))[:5]:
        print(f"  error: {message}")
    if errors:
        raise SystemExit(f"server log: {log.name}")
    os.unlink(log.name)


if __name__ == "__main__":
    main()
