"""``regard serve`` under hostile or heavy load: bounded work per request, deadlines, cancellation,
fairness, a bounded queue, connection timeouts, Host checks, and no 500 for any input.

The models are tiny and untrained (seeded): their outputs run to the search's length limit, the
worst case the work and response estimates are made for. Fairness and dropping are measured by
the model calls made, not by wall time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
import torch
import uvicorn

from regard.cli import main
from regard.search.common import max_lengths
from regard.serving import ServeSettings, create_app
from regard.serving.batcher import Batcher, DeadlinePassed, QueueFull, split
from regard.serving.budget import STEP_WORK, estimate, matrices
from regard.serving.guards import host_name
from regard.serving.parsing import strict_json
from regard.serving.server import ServerConfig
from regard.serving.settings import SettingError
from regard.translator import Translator
from tests.conftest import random_model, random_transformer, save_random

TEXT = "the black cat ate the mouse"
JSON = {"content-type": "application/json"}
ROOMY = ServeSettings(max_work=10**7, max_call_work=10**7, max_response_mb=10**4)  # no budget in the way


def roomy(**settings) -> ServeSettings:
    return replace(ROOMY, **settings)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer) -> dict[str, Translator]:
    root = tmp_path_factory.mktemp("limits")
    vocab = len(tiny_tokenizer)
    return {"rnn": Translator.load(save_random(root / "rnn", random_model(vocab=vocab, seed=1), tiny_tokenizer)),
            "tr": Translator.load(save_random(root / "tr", random_transformer(vocab=vocab, seed=2), tiny_tokenizer))}


class Gate:
    """A translator whose model calls are recorded, wait while ``open`` is clear, and last ``delay`` s."""

    def __init__(self, translator, delay: float = 0.0):
        self.translator = translator
        self.delay = delay
        self.calls: list[list[str]] = []
        self.entered = threading.Event()  # a call has started
        self.open = threading.Event()
        self.open.set()

    def __getattr__(self, name: str):
        return getattr(self.translator, name)

    def translate_nbest(self, texts, **options):
        self.calls.append(list(texts))
        self.entered.set()
        assert self.open.wait(30)
        time.sleep(self.delay)
        return self.translator.translate_nbest(texts, **options)


@contextmanager
def serving(models: dict, settings: ServeSettings) -> Iterator[tuple[object, str]]:
    """(app, base URL) of ``create_app(models, settings)``; the batcher closed afterwards."""
    app = create_app(models, settings)
    try:
        yield app
    finally:
        app.state.batcher.close()


async def send_all(app, calls: list[tuple[str, str, dict]], base: str = "http://localhost") -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, timeout=60) as client:
        return await asyncio.gather(*(client.request(method, url, **kw) for method, url, kw in calls))


def call(app, method: str, url: str, base: str = "http://localhost", **kw) -> httpx.Response:
    return asyncio.run(send_all(app, [(method, url, kw)], base))[0]


def post(app, body, **kw) -> httpx.Response:
    return call(app, "POST", "/api/translate", json=body, **kw)


def json_error(response: httpx.Response, status: int) -> str:
    """The error message of a JSON error response with ``status``."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"}
    return response.json()["error"]


async def until(condition, timeout: float = 30) -> None:
    """Wait (without blocking the event loop) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- the work budget

def test_the_estimate_bounds_the_search_and_the_real_response(models):
    for name, heads, nbest in (("rnn", False, 1), ("tr", True, 3)):
        translator = models[name]
        texts = [TEXT, "a dog saw the small girl and the red apples " * 3]
        cost = estimate(translator, texts, 3, nbest, heads, call_work=10**9)
        lengths = [len(ids) for ids in translator.src_tok.encode_batch(texts)]
        limits = max_lengths(torch.tensor(lengths), translator.cfg.search.max_ratio).tolist()
        assert cost.steps == [n + 1 for n in limits]
        assert cost.work == [s + 3 * (n + 1) for s, n in zip(lengths, limits)]
        assert cost.total_work == sum(cost.work) + STEP_WORK * max(cost.steps)  # one call
        with serving({name: translator}, ROOMY) as app:
            response = post(app, {"texts": texts, "beam": 3, "nbest": nbest, "heads": heads})
        assert response.status_code == 200
        hyps = [h for r in response.json()["results"] for h in r["hypotheses"]]
        assert max(len(h["tokens"]) for h in hyps) == max(limits)  # untrained: the worst case happens
        assert cost.response_bytes / 3 < len(response.content) <= cost.response_bytes, (name, len(response.content))


def test_heads_count_every_layer_and_head_in_the_response_estimate(models):
    tr = models["tr"]
    layers, heads = tr.cfg.model.decoder_layers, tr.cfg.model.heads
    assert (matrices(tr, False), matrices(tr, True), matrices(models["rnn"], True)) == (1, 1 + layers * heads, 2)
    plain, every = (estimate(tr, [TEXT], 2, 2, h, 10**9).response_bytes for h in (False, True))
    assert every > (1 + layers * heads) / 2 * plain
    settings = ServeSettings(max_response_mb=(plain + every) / 2 / 1e6)
    with serving({"tr": Gate(tr)}, settings) as app:
        assert post(app, {"text": TEXT, "beam": 2, "nbest": 2}).status_code == 200
        error = json_error(post(app, {"text": TEXT, "beam": 2, "nbest": 2, "heads": True}), 413)
        assert len(app.state.models["tr"].calls) == 1  # refused before any decoding
    assert f"could be {every / 1e6:,.1f} MB" in error and "max_response_mb" in error
    assert f"{settings.max_response_mb:g} MB" in error
    assert f"{every / (settings.max_response_mb * 1e6):.1f}× less" in error


def test_work_over_the_limit_is_a_413_naming_the_limit_and_by_how_much(models):
    rnn = models["rnn"]
    texts = [TEXT] * 6
    cost = estimate(rnn, texts, 4, 1, False, 10**9)
    settings = ServeSettings(max_work=cost.total_work - 1, max_call_work=10**9)
    gate = Gate(rnn)
    with serving({"rnn": gate}, settings) as app:
        error = json_error(post(app, {"texts": texts, "beam": 4}), 413)
        assert gate.calls == []  # nothing was decoded
        assert post(app, {"texts": texts[:5], "beam": 4}).status_code == 200
    assert f"asks for {cost.total_work:,} subword steps" in error
    assert f"the limit (max_work) is {settings.max_work:,}" in error
    assert f"{cost.total_work / settings.max_work:.1f}× less" in error


def test_the_default_limits_refuse_the_request_of_the_issue(models):
    """64 texts of 1,000 characters of a repeated word, beam 10, n-best 10: once 39 s and 458 MB."""
    body = {"texts": [("cat " * 250)[:1000]] * 64, "beam": 10, "nbest": 10}
    gate = Gate(models["rnn"])
    with serving({"rnn": gate}, ServeSettings()) as app:
        started = time.monotonic()
        error = json_error(post(app, body), 413)
        assert time.monotonic() - started < 5
        assert "max_work" in error and gate.calls == []


def test_splitting_into_calls_is_what_the_batcher_does_and_what_the_budget_counts():
    work, steps = [30, 5, 12, 30, 7, 22], [9, 2, 4, 9, 3, 6]
    calls = split(work, steps, cap=40, step_work=3)
    assert [c.work for c in calls] == [24, 22, 30, 30]  # by steps: 5+7+12, 22, 30, 30
    assert [c.total() for c in calls] == [24 + 3 * 4, 22 + 3 * 6, 30 + 27, 30 + 27]
    fake = Recorder()
    batcher = Batcher({"m": fake}, wait_s=0, call_work=40, step_work=3)
    try:
        texts = [f"t{i}" for i in range(6)]
        batcher.submit("m", texts, 1, 1, work=work, steps=steps).result(30)
    finally:
        batcher.close()
    assert fake.calls == [["t1", "t4", "t2"], ["t5"], ["t0"], ["t3"]]


class Recorder:
    """A translator that echoes its texts and records each call (and can be held at ``gate``)."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def translate_nbest(self, texts, beam, nbest):
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(30)
        return [[t] for t in texts]


# ---------------------------------------------------------------- fairness, deadlines, cancellation, the queue

def test_a_short_request_waits_for_one_call_of_a_long_one_not_for_all_of_it():
    fake = Recorder()
    batcher = Batcher({"m": fake}, wait_s=0, call_work=10)
    try:
        fake.gate.clear()
        long = batcher.submit("m", [f"long{i}" for i in range(8)], 1, 1, work=[10] * 8)
        assert fake.entered.wait(30)  # the first of its 8 calls is running
        short = batcher.submit("m", ["short"], 1, 1, work=[3])
        fake.gate.set()
        assert short.result(30) == [["short"]] and len(long.result(30)) == 8
    finally:
        batcher.close()
    assert [c for c in fake.calls] == [["long0"], ["short"]] + [[f"long{i}"] for i in range(1, 8)]


def test_concurrent_short_requests_share_a_call_between_a_long_ones_calls():
    fake = Recorder()
    batcher = Batcher({"m": fake}, wait_s=0, call_work=10)
    try:
        fake.gate.clear()
        long = batcher.submit("m", [f"long{i}" for i in range(4)], 1, 1, work=[10] * 4)
        assert fake.entered.wait(30)
        shorts = [batcher.submit("m", [f"s{i}"], 1, 1, work=[2]) for i in range(3)]
        fake.gate.set()
        assert [s.result(30) for s in shorts] == [[["s0"]], [["s1"]], [["s2"]]] and long.result(30)
    finally:
        batcher.close()
    assert fake.calls[:2] == [["long0"], ["s0", "s1", "s2"]]


def test_a_long_job_past_half_its_deadline_gets_every_other_call_while_short_ones_keep_coming():
    fake = Recorder()
    batcher = Batcher({"m": fake}, wait_s=0, call_work=10)
    try:
        fake.gate.clear()
        long = batcher.submit("m", [f"long{i}" for i in range(5)], 1, 1, work=[10] * 5,
                              deadline=time.monotonic() + 2)
        assert fake.entered.wait(30)
        time.sleep(1.05)  # past half its deadline
        shorts = [batcher.submit("m", [f"s{beam}"], beam, 1, work=[1]) for beam in (2, 3, 4)]  # no sharing
        fake.gate.set()
        assert len(long.result(30)) == 5 and all(s.result(30) for s in shorts)
    finally:
        batcher.close()
    assert fake.calls == [["long0"], ["s2"], ["long1"], ["s3"], ["long2"], ["s4"], ["long3"], ["long4"]]


def test_a_job_past_its_deadline_is_dropped_with_its_remaining_calls():
    fake = Recorder()
    batcher = Batcher({"m": fake}, wait_s=0, call_work=1)
    try:
        fake.gate.clear()
        job = batcher.submit("m", ["a", "b", "c", "d"], 1, 1, deadline=time.monotonic() + 0.2)
        assert fake.entered.wait(30)
        time.sleep(0.3)
        fake.gate.set()
        with pytest.raises(DeadlinePassed):
            job.result(30)
        assert batcher.submit("m", ["next"], 1, 1).result(30) == [["next"]]
    finally:
        batcher.close()
    assert fake.calls == [["a"], ["next"]]
    assert (batcher.stats.dropped, batcher.pending) == (1, 0)


def test_the_api_answers_503_at_the_deadline_and_drops_the_work(models):
    gate = Gate(models["rnn"], delay=0.3)
    texts = [TEXT, TEXT + " again", "a dog saw the girl", "the cows liked the red apples"]
    settings = roomy(deadline_s=0.5, max_call_work=1)  # one text per call: 4 calls of 0.3 s
    with serving({"rnn": gate}, settings) as app:
        started = time.monotonic()
        error = json_error(post(app, {"texts": texts, "beam": 2}), 503)
        assert time.monotonic() - started < 2
        time.sleep(1.0)  # the calls the job would have had by now
        stats, pending = app.state.batcher.stats, app.state.batcher.pending
    assert "deadline of 0.5 s passed" in error
    assert len(gate.calls) <= 2 < len(texts)  # the one running at the deadline finished; none after
    assert (stats.dropped, stats.requests, pending) == (1, 0, 0)


def test_a_full_queue_is_a_503_with_retry_after(models):
    gate = Gate(models["rnn"])
    settings = roomy(max_texts=2, max_queue=2, deadline_s=20)

    async def scenario(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                     timeout=60) as client:
            first = asyncio.ensure_future(client.post("/api/translate", json={"texts": [TEXT, TEXT], "beam": 1}))
            await until(gate.entered.is_set)  # its 2 texts are in the (held) model call
            second = asyncio.ensure_future(client.post("/api/translate", json={"texts": [TEXT, TEXT], "beam": 1}))
            await until(lambda: app.state.batcher.queued_texts == 2)
            third = await client.post("/api/translate", json={"text": TEXT, "beam": 1})
            health = await client.get("/api/health")
            gate.open.set()
            return third, health, await first, await second

    gate.open.clear()
    with serving({"rnn": gate}, settings) as app:
        third, health, first, second = asyncio.run(scenario(app))
    assert "busy" in json_error(third, 503) and third.headers["retry-after"] == "20"
    assert health.status_code == 200 and health.json()["queued"] == 2
    assert (first.status_code, second.status_code) == (200, 200)


def test_health_answers_at_once_while_the_model_thread_is_busy(models):
    gate = Gate(models["rnn"])

    async def scenario(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                     timeout=60) as client:
            busy = asyncio.ensure_future(client.post("/api/translate", json={"text": TEXT, "beam": 2}))
            await until(gate.entered.is_set)
            started = time.monotonic()
            health = await client.get("/api/health")
            took = time.monotonic() - started
            gate.open.set()
            return health, took, await busy

    gate.open.clear()
    with serving({"rnn": gate}, ServeSettings()) as app:
        health, took, busy = asyncio.run(scenario(app))
    assert health.status_code == 200 and health.json()["queued"] == 1 and took < 1
    assert busy.status_code == 200


def test_the_queue_refuses_a_job_with_no_room_and_the_settings_keep_room_for_one_request():
    batcher = Batcher({"m": Recorder()}, max_queue=3)
    try:
        with pytest.raises(QueueFull):
            batcher.submit("m", ["a", "b", "c", "d"], 1, 1)
    finally:
        batcher.close()
    with pytest.raises(SettingError, match="max_queue must be at least max_texts"):
        ServeSettings(max_texts=8, max_queue=4)


# ---------------------------------------------------------------- a real server: connections and disconnects

@contextmanager
def real_server(models: dict, settings: ServeSettings) -> Iterator[tuple[object, int]]:
    """(app, port) of uvicorn configured as ``regard serve`` does, on a free loopback port, in a thread."""
    app = create_app(models, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(ServerConfig(app, settings, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield app, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_all(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it ends the connection, and how long that took; then close."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - started


def parse(data: bytes) -> tuple[int, dict[str, str], dict]:
    """(status, headers, JSON body) of one raw HTTP response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"].startswith("application/json"), data[:300]
    return int(lines[0].split()[1]), headers, json.loads(body[:int(headers["content-length"])])


def request_bytes(body: dict, host: str = "localhost") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST /api/translate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def test_a_client_that_goes_away_has_its_queued_work_cancelled(models):
    gate = Gate(models["rnn"])
    settings = roomy(max_call_work=1, deadline_s=30)  # one text per model call
    gate.open.clear()
    with real_server({"rnn": gate}, settings) as (app, port):
        first = connect(port)
        first.sendall(request_bytes({"texts": ["one", "two", "three"], "beam": 1}))
        assert gate.entered.wait(30)  # "one" is in the held model call
        second = connect(port)
        second.sendall(request_bytes({"text": "never", "beam": 1}))
        deadline = time.monotonic() + 30
        while app.state.batcher.pending < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first.close()
        second.close()
        while app.state.batcher.pending:  # both dropped at once, while the model call is still held
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gate.open.set()
        time.sleep(0.3)
        stats = app.state.batcher.stats
    assert gate.calls == [["one"]]  # "two", "three" and "never" were never computed
    assert (stats.dropped, stats.requests) == (2, 0)


def test_headers_and_bodies_that_do_not_arrive_in_time_get_408_and_are_closed(models):
    settings = ServeSettings(read_timeout_s=0.5, keep_alive_s=0.5)
    with real_server(models, settings) as (_, port):
        half = connect(port)
        half.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n")
        status, _, body = parse((data := read_all(half))[0])
        assert status == 408 and "headers did not arrive within 0.5 s" in body["error"] and data[1] < 3

        trickle = connect(port)  # a byte at a time, each before the last one's timeout: still 0.5 s in all
        started = time.monotonic()
        for byte in b"GET /api/health HTTP/1.1\r\nHost: loc":
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        assert parse(read_all(trickle)[0])[0] == 408 and time.monotonic() - started < 3

        silent = connect(port)
        assert parse(read_all(silent)[0])[0] == 408

        slow_body = connect(port)
        slow_body.sendall(b"POST /api/translate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"text\": ")
        status, headers, body = parse(read_all(slow_body)[0])
        assert status == 408 and "body did not arrive within 0.5 s" in body["error"]
        assert headers["connection"] == "close"

        kept = connect(port)  # a whole request, then nothing: closed after keep_alive_s
        kept.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, took = read_all(kept)
        assert data.startswith(b"HTTP/1.1 200") and took < 3


def test_connections_over_the_cap_get_503_and_oversized_or_broken_requests_json_errors(models):
    settings = ServeSettings(max_connections=2, max_header_bytes=2048, read_timeout_s=5)
    with real_server(models, settings) as (_, port):
        held = [connect(port), connect(port)]
        time.sleep(0.2)
        extra = connect(port)
        status, headers, body = parse(read_all(extra)[0])
        assert status == 503 and headers["retry-after"] == "1" and "2 connections" in body["error"]
        for sock in held:
            sock.close()
        time.sleep(0.2)

        big = connect(port)
        big.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        status, _, body = parse(read_all(big)[0])
        assert status == 431 and "2048-byte limit" in body["error"]

        for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"GET / HTTP/1.1\r\nHost\r\n\r\n",
                        b"POST /api/translate HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n"):
            broken = connect(port)
            broken.sendall(garbage)
            status, _, body = parse(read_all(broken)[0])
            assert status == 400 and "not valid HTTP/1.1" in body["error"]

        ok = connect(port)  # and still serving
        ok.sendall(request_bytes({"text": TEXT, "beam": 1}))
        ok.settimeout(30)
        assert ok.recv(12) == b"HTTP/1.1 200"
        ok.close()


# ---------------------------------------------------------------- the Host header

def test_only_allowed_host_names_reach_the_api(models):
    with serving(models, ServeSettings()) as app:
        for base in ("http://localhost", "http://localhost:8000", "http://127.0.0.1:9", "http://[::1]:8000",
                     "http://LOCALHOST"):
            assert call(app, "GET", "/api/health", base=base).status_code == 200, base
        for base in ("http://evil.example", "http://localhost.evil.example", "http://127.0.0.2",
                     "http://attacker.test:8000"):
            error = json_error(call(app, "GET", "/api/health", base=base), 400)
            assert "is not a name this server answers to" in error and "--allowed-hosts" in error
            assert json_error(post(app, {"text": TEXT}, base=base), 400) == error
        error = json_error(call(app, "GET", "/", headers={"host": b"evil\xff.example"}), 400)
        assert "evil" in error
    with serving(models, ServeSettings(allowed_hosts="regard.example, other.example")) as app:
        assert call(app, "GET", "/api/health", base="http://regard.example:8000").status_code == 200
        assert call(app, "GET", "/api/health").status_code == 400
    with serving(models, ServeSettings(allowed_hosts="*")) as app:
        assert call(app, "GET", "/api/health", base="http://anything.example").status_code == 200


def test_host_names_and_the_bound_address():
    assert [host_name(h) for h in ("LocalHost:80", "[::1]:8000", "::1", "127.0.0.1", "localhost.", "a:b:c")] == [
        "localhost", "::1", "::1", "127.0.0.1", "localhost", "a:b:c"]
    assert "192.168.1.5" in ServeSettings().allowing("192.168.1.5").host_names
    assert ServeSettings().allowing("0.0.0.0") == ServeSettings() == ServeSettings().allowing("127.0.0.1")
    with pytest.raises(SettingError, match="allowed_hosts must name at least one host"):
        ServeSettings(allowed_hosts=" , ")


# ---------------------------------------------------------------- no input gives a 500

SURROGATES = [
    (b'{"text": "the cat", "model": "\\ud800"}', "model is not valid Unicode"),
    (b'{"texts": ["the cat", "a \\udfff dog"]}', "texts[1] is not valid Unicode"),
    (b'{"text": "the cat", "\\ud83d": 1}', "a field name in the request body is not valid Unicode"),
    (b'{"text": {"deep": ["\\ud800"]}}', "text.deep[0] is not valid Unicode"),
    (b'"\\ud800"', "the request body is not valid Unicode"),
]


@pytest.mark.parametrize("content, message", SURROGATES, ids=[str(i) for i in range(len(SURROGATES))])
def test_a_lone_surrogate_anywhere_is_a_422_that_says_where(models, content, message):
    with serving(models, ServeSettings()) as app:
        response = call(app, "POST", "/api/translate", content=content, headers=JSON)
        assert message in json_error(response, 422)


BAD_BYTES = [
    ('{"text": "x"}'.encode("utf-16"), 400, "must be UTF-8 text; byte 0xff at offset 0"),
    (b'{"text": "\xed\xa0\x80"}', 400, "must be UTF-8 text"),  # a surrogate encoded as UTF-8
    (b'{"text": "caf\xe9"}', 400, "must be UTF-8 text"),
    (b"\xef\xbb\xbf" + b'{"text": "x"}', 400, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 413, "byte limit"),
    (b"[" * 20_000 + b"]" * 20_000, 400, "nested too deeply"),
    (b'{"text": "x", "beam": ' + b"9" * 5000 + b"}", 400, "a number in it is too long"),
    (b'{"text": "x", "beam": NaN}', 422, "beam: Input should be a valid integer"),
    (b'{"text": "x", "beam": 1e999}', 422, "beam: Input should be a valid integer"),
    (b'{"texts": [' + b",".join([b"1"] * 20_000) + b"]}", 422, "; and 19995 more"),
]


@pytest.mark.parametrize("content, status, message", BAD_BYTES, ids=[str(i) for i in range(len(BAD_BYTES))])
def test_undecodable_or_odd_json_is_a_clear_4xx(models, content, status, message):
    settings = ServeSettings(max_texts=4)  # a body limit of about 50 KB
    with serving(models, settings) as app:
        response = call(app, "POST", "/api/translate", content=content, headers=JSON)
        assert message in json_error(response, status)


def test_fuzzed_bodies_paths_and_headers_never_reach_the_last_resort(models, caplog):
    rng = random.Random(19)
    valid = json.dumps({"texts": [TEXT, "a dog"], "beam": 2, "nbest": 2, "model": "rnn", "heads": True}).encode()
    tokens = [b'"\\ud800"', b'"\\udc00"', b"\xff", b"\xed\xa0\x80", b"\x00", b"[", b"]", b"{", b"}", b'"', b"\\",
              b"1e999", b"-0", b"null", b"true", b'"x"', b",", b":", b"\\u", b"9" * 30]
    calls = []
    for _ in range(150):
        body = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(body) + 1)
            if rng.random() < 0.5:
                body[at:at + rng.randint(0, 3)] = rng.choice(tokens)
            else:
                body[at:at] = bytes([rng.randrange(256)])
        calls.append(("POST", "/api/translate", {"content": bytes(body), "headers": JSON}))
    for path in ("/static/%00", "/static/..%2f..%2fpyproject.toml", "/static/" + "a" * 5000, "/api/%ff", "/%2e%2e/",
                 "/docs?x=%ff", "/api/translate?text=%ud800"):
        calls.append(("GET", path, {}))
    odd_type = {"content-type": b"application/json; x=\xff"}
    calls.append(("POST", "/api/translate", {"content": valid, "headers": odd_type}))
    calls.append(("POST", "/api/translate", {"content": valid, "headers": {"content-type": "multipart/form-data"}}))
    with caplog.at_level(logging.ERROR), serving(models, ServeSettings()) as app:
        responses = asyncio.run(send_all(app, calls))
    for (_, url, kw), response in zip(calls, responses):
        assert response.status_code < 500, (url, kw.get("content"), response.text[:200])
        assert response.headers["content-type"].startswith("application/json") or response.status_code == 200
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}
    assert not [r for r in caplog.records if r.name.startswith("regard")], "the catch-all handler was reached"
    assert {r.status_code for r in responses} - {200, 404} and 200 in {r.status_code for r in responses}


def test_the_limits_settings_are_checked_by_regard_serve(capsys):
    assert main(["serve", "--model", "not-loaded", "--max-queue", "8"]) == 2
    assert capsys.readouterr().err == "regard: error: --max-queue must be at least max_texts (64), got 8\n"
    assert main(["serve", "--model", "not-loaded", "--deadline-s", "0"]) == 2
    assert capsys.readouterr().err == "regard: error: --deadline-s must be at least 0.01, got 0.0\n"


def test_strict_json_keeps_valid_unicode():
    assert strict_json('{"text": "caf\\u00e9 🐈 \\ud83d\\ude00"}'.encode()) == {"text": "café 🐈 😀"}
