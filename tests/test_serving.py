"""The REST API of ``regard serve``: every endpoint, every bad input, dynamic batching."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from concurrent.futures import Future
from dataclasses import fields
from pathlib import Path

import httpx
import numpy as np
import pytest

from regard.cli import build_parser, main
from regard.errors import RegardError
from regard.serving import ServeSettings, create_app
from regard.serving.app import STATIC
from regard.serving.batcher import Batcher
from regard.search.common import check_nbest
from regard.serving.models import load_models, parse_model_spec
from regard.serving.settings import setting_help
from regard.translator import Translator
from tests.serving_models import model_root, trained_model

SETTINGS = ServeSettings(max_chars=60, max_texts=4, max_beam=6)
SENTENCES = ["the black cat ate the mouse", "a dog saw the small girl", "the cows liked the red apples",
             "the boy watched a white horse", "the woman found the books", "a girl chased the grey mouse"]


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = model_root(tmp_path_factory)
    return {"att": trained_model(root, "general"), "none": trained_model(root, "none")}


@pytest.fixture(scope="session")
def translators(model_dirs) -> dict[str, Translator]:
    return {name: Translator.load(folder) for name, folder in model_dirs.items()}


@pytest.fixture
def app(translators):
    app = create_app(translators, SETTINGS)
    yield app
    app.state.batcher.close()


async def _requests(app, calls: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await asyncio.gather(*(client.request(method, url, **kw) for method, url, kw in calls))


def call(app, method: str, url: str, **kw) -> httpx.Response:
    return asyncio.run(_requests(app, [(method, url, kw)]))[0]


def post(app, body) -> httpx.Response:
    return call(app, "POST", "/api/translate", json=body)


def same_translation(hyp: dict, expected, source: dict) -> None:
    """An API hypothesis equals what the Python API gives for the same text."""
    assert hyp["text"] == expected.text
    assert hyp["tokens"] == expected.tokens
    assert hyp["target_words"] == expected.target_words
    assert hyp["score"] == pytest.approx(expected.score, abs=1e-4)
    assert source["source_words"] == expected.source_words
    assert source["source_tokens"] == expected.source_tokens
    if expected.attention is None:
        assert hyp["attention"] is None and hyp["word_attention"] is None
    else:
        np.testing.assert_allclose(np.array(hyp["attention"]), np.array(expected.attention), atol=1e-4)
        np.testing.assert_allclose(np.array(hyp["word_attention"]), np.array(expected.word_attention), atol=1e-4)


# ---------------------------------------------------------------- endpoints

def test_health(app):
    response = call(app, "GET", "/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": ["att", "none"], "queued": 0, "requests": 0, "batches": 0}


def test_models_lists_models_default_and_limits(app):
    data = call(app, "GET", "/api/models").json()
    assert data["default"] == "att"
    assert [(m["name"], m["default"], m["attention"], m["has_attention"]) for m in data["models"]] == [
        ("att", True, "general", True), ("none", False, "none", False)]
    assert all(m["beam"] == 5 and m["parameters"] > 0 for m in data["models"])
    assert data["limits"] == {"max_chars": 60, "max_texts": 4, "max_beam": 6, "max_work": SETTINGS.max_work,
                              "max_response_mb": SETTINGS.max_response_mb, "deadline_s": SETTINGS.deadline_s}


def test_translate_one_text_matches_the_python_api(app, translators):
    response = post(app, {"text": SENTENCES[0], "beam": 3})
    assert response.status_code == 200
    data = response.json()
    assert (data["model"], data["has_attention"], data["beam"], data["nbest"]) == ("att", True, 3, 1)
    [result] = data["results"]
    assert result["source"] == SENTENCES[0]
    [hyp] = result["hypotheses"]
    same_translation(hyp, translators["att"].translate([SENTENCES[0]], beam=3)[0], result)
    assert len(hyp["attention"]) == len(hyp["tokens"])
    assert all(len(row) == len(result["source_tokens"]) for row in hyp["attention"])
    assert len(hyp["word_attention"]) == len(hyp["target_words"])
    assert all(sum(row) == pytest.approx(1, abs=1e-4) for row in hyp["word_attention"])


def test_translate_texts_keeps_their_order(app, translators):
    texts = SENTENCES[:4]
    data = post(app, {"texts": texts, "beam": 1}).json()
    assert [r["source"] for r in data["results"]] == texts
    for result, expected in zip(data["results"], translators["att"].translate(texts, beam=1)):
        same_translation(result["hypotheses"][0], expected, result)


def test_default_beam_is_the_models_within_the_limit(app, translators):
    assert post(app, {"text": SENTENCES[1]}).json()["beam"] == 5
    capped = create_app(translators, ServeSettings(max_beam=2))
    try:
        assert post(capped, {"text": SENTENCES[1]}).json()["beam"] == 2
    finally:
        capped.state.batcher.close()


def test_nbest_gives_each_hypothesis_its_own_attention(app, translators):
    data = post(app, {"text": SENTENCES[0], "beam": 4, "nbest": 3}).json()
    assert data["nbest"] == 3
    [result] = data["results"]
    hyps = result["hypotheses"]
    expected = translators["att"].translate_nbest([SENTENCES[0]], beam=4, nbest=3)[0]
    assert len(hyps) == 3
    assert len({h["text"] for h in hyps}) == 3
    assert [h["score"] for h in hyps] == sorted((h["score"] for h in hyps), reverse=True)
    for hyp, exp in zip(hyps, expected):
        same_translation(hyp, exp, result)
        assert len(hyp["word_attention"]) == len(hyp["target_words"])


def test_model_without_attention_returns_null_attention(app, translators):
    data = post(app, {"text": SENTENCES[0], "model": "none", "beam": 2}).json()
    assert (data["model"], data["has_attention"]) == ("none", False)
    hyp = data["results"][0]["hypotheses"][0]
    assert hyp["attention"] is None and hyp["word_attention"] is None
    assert hyp["text"] == translators["none"].translate([SENTENCES[0]], beam=2)[0].text


def test_two_models_answer_concurrent_requests_each_with_its_own_output(app, translators):
    calls = [("POST", "/api/translate", {"json": {"text": SENTENCES[0], "model": name, "beam": 2}})
             for name in ("att", "none")]
    att, none = (r.json() for r in asyncio.run(_requests(app, calls)))
    for data, name in ((att, "att"), (none, "none")):
        assert data["model"] == name
        same_translation(data["results"][0]["hypotheses"][0], translators[name].translate([SENTENCES[0]], beam=2)[0],
                         data["results"][0])


def test_page_and_its_assets_are_served_and_self_contained(app):
    page = call(app, "GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and 'href="/static/style.css"' in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        asset = call(app, "GET", f"/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
    for path in STATIC.iterdir():  # offline: nothing is fetched from elsewhere
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text and "@font-face" not in text


def test_openapi_schema_and_docs(app):
    schema = call(app, "GET", "/openapi.json").json()
    assert {"/api/translate", "/api/models", "/api/health"} <= set(schema["paths"])
    assert "TranslateRequest" in schema["components"]["schemas"]
    docs = call(app, "GET", "/docs")
    assert docs.status_code == 200
    # offline: the Swagger UI page loads its script and style from this server, not a CDN
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert call(app, "GET", asset).status_code == 200


# ---------------------------------------------------------------- bad input

BAD_BODIES = [
    ({"text": ""}, 422, "text is empty"),
    ({"text": "  \t \n "}, 422, "text is empty"),
    ({"texts": ["the cat", "   "]}, 422, "texts[1] is empty"),
    ({"texts": []}, 422, "'texts' is empty"),
    ({"text": "a" * 61}, 422, "61 characters long; the limit is 60"),
    ({"texts": ["the cat"] * 5}, 422, "too many texts: 5 (the limit is 4"),
    ({}, 422, "exactly one of 'text'"),
    ({"text": "the cat", "texts": ["the dog"]}, 422, "exactly one of 'text'"),
    ({"text": 5}, 422, "text: Input should be a valid string"),
    ({"text": ["the cat"]}, 422, "text: Input should be a valid string"),
    ({"texts": "the cat"}, 422, "texts: Input should be a valid list"),
    ({"texts": ["the cat", 3]}, 422, "texts[1]: Input should be a valid string"),
    ({"text": "the cat", "beam": "5"}, 422, "beam: Input should be a valid integer"),
    ({"text": "the cat", "beam": 2.5}, 422, "beam: Input should be a valid integer"),
    ({"text": "the cat", "beam": True}, 422, "beam: Input should be a valid integer"),
    ({"text": "the cat", "nbest": None}, 422, "nbest: Input should be a valid integer"),
    ({"text": "the cat", "beam": 0}, 422, "beam must be between 1 and 6, got 0"),
    ({"text": "the cat", "beam": 7}, 422, "beam must be between 1 and 6, got 7"),
    ({"text": "the cat", "beam": -1}, 422, "beam must be between 1 and 6, got -1"),
    ({"text": "the cat", "beam": 3, "nbest": 4}, 422, "nbest must be between 1 and the beam size (3), got 4"),
    ({"text": "the cat", "nbest": 0}, 422, "nbest must be between 1 and the beam size (5), got 0"),
    ({"text": "the cat", "nbest": 6}, 422, "nbest must be between 1 and the beam size (5), got 6"),
    ({"text": "the cat", "model": "zzz"}, 404, "unknown model 'zzz'; loaded: att, none"),
    ({"text": "the cat", "model": 1}, 422, "model: Input should be a valid string"),
    ({"text": "the cat", "temperature": 1}, 422, "unknown field 'temperature'"),
    ([{"text": "the cat"}], 400, "must be a JSON object"),
    ("the cat", 400, "must be a JSON object"),
    (None, 400, "must be a JSON object"),
    (42, 400, "must be a JSON object"),
]


@pytest.mark.parametrize("body, status, message", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_json_bodies_get_a_clear_4xx_error(app, body, status, message):
    response = call(app, "POST", "/api/translate", content=json.dumps(body).encode(),
                    headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]
    assert set(response.json()) == {"error"}


RAW_BODIES = [
    (b'{"text": "the cat"', {"content-type": "application/json"}, 400, "not valid JSON"),
    (b"{'text': 'the cat'}", {"content-type": "application/json"}, 400, "not valid JSON"),
    (b"", {"content-type": "application/json"}, 400, "the request body is empty"),
    (b"\xff\xfe\x00", {"content-type": "application/json"}, 400, "not valid JSON (it must be UTF-8"),
    (b'{"text": "the cat \\ud800"}', {"content-type": "application/json"}, 422, "not valid Unicode"),
    (b'{"text": "the cat"}', {}, 415, "Content-Type: application/json"),
    (b'{"text": "the cat"}', {"content-type": "text/plain"}, 415, "Content-Type: application/json"),
    (b'{"text": "' + b"a" * 10**6 + b'"}', {"content-type": "application/json"}, 413, "byte limit"),
]


@pytest.mark.parametrize("content, headers, status, message", RAW_BODIES, ids=[str(i) for i in range(len(RAW_BODIES))])
def test_bad_raw_bodies_get_a_clear_4xx_error(app, content, headers, status, message):
    response = call(app, "POST", "/api/translate", content=content, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_oversized_chunked_body_is_refused_without_content_length(app):
    async def chunks():
        for _ in range(100):
            yield b"x" * 10_000

    response = call(app, "POST", "/api/translate", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_unknown_paths_and_methods_get_json_errors(app):
    for method, url, status in (("GET", "/api/nope", 404), ("GET", "/api/translate", 405),
                                ("POST", "/api/health", 405), ("GET", "/static/missing.js", 404)):
        response = call(app, method, url)
        assert response.status_code == status
        assert response.json()["error"]


def test_odd_but_valid_text_never_breaks_the_server(app):
    odd = ["🐈‍⬛ the black cat", "THE BLACK CAT", "le chat", "x" * 60, "the\u0000cat", "a\u202eb", "\u00a0the cat",
           "the cat " * 7, "?!.,;:", "ქართული", "the\tcat\nate"]
    responses = asyncio.run(_requests(app, [("POST", "/api/translate", {"json": {"text": t, "beam": 6, "nbest": 6}})
                                            for t in odd]))
    assert [r.status_code for r in responses] == [200] * len(odd)
    assert post(app, {"text": SENTENCES[0]}).status_code == 200  # and still serving


def test_the_server_keeps_serving_after_bad_requests(app):
    for body, _, _ in BAD_BODIES:
        post(app, body)
    response = post(app, {"text": SENTENCES[0], "beam": 2})
    assert response.status_code == 200
    assert response.json()["results"][0]["hypotheses"][0]["text"]


# ---------------------------------------------------------------- dynamic batching

def test_concurrent_requests_are_batched_and_each_gets_its_own_result(translators):
    app = create_app(translators, ServeSettings(batch_wait_ms=300))
    bodies = [{"text": text, "beam": 2} for text in SENTENCES] + [
        {"texts": SENTENCES[:2], "beam": 2}, {"text": SENTENCES[2], "beam": 3, "nbest": 2},
        {"text": SENTENCES[3], "model": "none", "beam": 2}]
    try:
        responses = asyncio.run(_requests(app, [("POST", "/api/translate", {"json": b}) for b in bodies]))
        stats = app.state.batcher.stats
        health = call(app, "GET", "/api/health").json()
    finally:
        app.state.batcher.close()
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for body, response in zip(bodies, responses):
        model = translators[body.get("model", "att")]
        texts = body.get("texts") or [body["text"]]
        expected = model.translate_nbest(texts, beam=body["beam"], nbest=body.get("nbest", 1))
        results = response.json()["results"]
        assert len(results) == len(texts)
        for result, text, hyps in zip(results, texts, expected):
            assert result["source"] == text
            assert len(result["hypotheses"]) == len(hyps)
            for hyp, exp in zip(result["hypotheses"], hyps):
                same_translation(hyp, exp, result)
    # 9 requests, 3 distinct (model, beam, nbest) groups: far fewer model calls than requests
    assert stats.requests == len(bodies)
    assert stats.batches < len(bodies)
    assert stats.largest_batch > 1
    assert (health["requests"], health["batches"]) == (stats.requests, stats.batches)


class FakeTranslator:
    """Echoes its input upper-cased, records each call, and fails on 'boom'."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def translate_nbest(self, texts, beam, nbest):
        self.calls.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("boom")
        return [[f"{t.upper()}/{beam}/{nbest}"] for t in texts]


def test_batcher_groups_by_settings_from_many_threads_and_survives_errors():
    fake = FakeTranslator()
    batcher = Batcher({"fake": fake}, wait_s=0.3)
    futures: dict[str, Future] = {}
    lock = threading.Lock()

    def submit(i: int) -> None:
        future = batcher.submit("fake", [f"s{i}"], beam=1 + i % 2, nbest=1)
        with lock:
            futures[f"s{i}"] = future

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        for name, future in futures.items():
            i = int(name[1:])
            assert future.result(timeout=30) == [[f"S{i}/{1 + i % 2}/1"]]
        assert len(fake.calls) == 2  # one model call per beam size
        assert sorted(len(c) for c in fake.calls) == [5, 5]
        failed = batcher.submit("fake", ["boom"], beam=1, nbest=1)
        with pytest.raises(RuntimeError, match="boom"):
            failed.result(timeout=30)
        assert batcher.submit("fake", ["ok"], beam=1, nbest=1).result(timeout=30) == [["OK/1/1"]]
    finally:
        batcher.close()
    with pytest.raises(KeyError):
        batcher.submit("missing", ["x"], beam=1, nbest=1)


def test_batcher_close_finishes_queued_work_and_can_restart():
    fake = FakeTranslator()
    batcher = Batcher({"fake": fake}, wait_s=0.05)
    pending = [batcher.submit("fake", [f"t{i}"], beam=1, nbest=1) for i in range(3)]
    batcher.close()
    assert [f.result(timeout=0) for f in pending] == [[["T0/1/1"]], [["T1/1/1"]], [["T2/1/1"]]]
    assert batcher.submit("fake", ["again"], beam=1, nbest=1).result(timeout=30) == [["AGAIN/1/1"]]
    batcher.close()


# ---------------------------------------------------------------- regard serve

def test_model_specs_name_models():
    assert parse_model_spec("att=runs/x/model") == ("att", "runs/x/model")
    assert parse_model_spec("runs/demo/baseline") == ("baseline", "runs/demo/baseline")
    assert parse_model_spec("runs/att/best/") == ("att", "runs/att/best/")  # a run's best/ is named after the run
    for bad in ("=runs/x", "att="):
        with pytest.raises(RegardError, match="NAME=DIR"):
            parse_model_spec(bad)


def test_load_models_keeps_order_and_refuses_duplicate_names(model_dirs, tmp_path):
    models = load_models([f"second={model_dirs['none']}", f"first={model_dirs['att']}"])
    assert list(models) == ["second", "first"]
    assert not models["second"].has_attention and models["first"].has_attention
    assert list(load_models([str(model_dirs["att"]), str(model_dirs["none"])])) == ["serving-general", "serving-none"]
    with pytest.raises(RegardError, match="two models are named 'serving-general'"):
        load_models([str(model_dirs["att"]), f"{model_dirs['att'].parent}"])
    with pytest.raises(RegardError, match="not found"):
        load_models([f"x={tmp_path / 'missing'}"])


def test_regard_serve_builds_the_app_and_runs_uvicorn_on_loopback(model_dirs, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: seen.update(
        app=server.config.app, host=server.config.host, port=server.config.port, config=server.config))
    args = build_parser().parse_args(["serve", "--model", f"att={model_dirs['att']}", "--model",
                                      f"none={model_dirs['none']}", "--port", "8123", "--max-chars", "30",
                                      "--max-texts", "2", "--max-beam", "3"])
    args.func(args)
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8123)
    config, defaults = seen["config"], ServeSettings()
    assert (config.timeout_keep_alive, config.h11_max_incomplete_event_size) == (
        defaults.keep_alive_s, defaults.max_header_bytes)
    app = seen["app"]
    try:
        assert list(app.state.models) == ["att", "none"]
        assert app.state.settings == ServeSettings(max_chars=30, max_texts=2, max_beam=3)
        assert post(app, {"text": "a" * 31}).status_code == 422
        assert post(app, {"texts": ["the cat"] * 3}).status_code == 422
        assert post(app, {"text": SENTENCES[0]}).json()["beam"] == 3
    finally:
        app.state.batcher.close()
    defaults = build_parser().parse_args(["serve", "--model", "x"])
    assert (defaults.host, defaults.port, defaults.max_chars, defaults.max_texts, defaults.max_beam) == (
        "127.0.0.1", 8000, 1000, 64, 10)


def test_serve_options_are_the_settings_fields_with_their_defaults_and_help(capsys):
    defaults = build_parser().parse_args(["serve", "--model", "x"])
    assert ServeSettings(**{f.name: getattr(defaults, f.name) for f in fields(ServeSettings)}) == ServeSettings()
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in fields(ServeSettings):
        assert f"--{f.name.replace('_', '-')}" in text and f"{f.metadata['help']} (default: {f.default})" in text


@pytest.mark.parametrize("argv, library, command_line", [
    (["--max-chars", "0"], "max_chars must be at least 1, got 0", "--max-chars must be at least 1, got 0"),
    (["--max-beam", "-2"], "max_beam must be at least 1, got -2", "--max-beam must be at least 1, got -2"),
    (["--batch-wait-ms", "-1"], "batch_wait_ms must be at least 0, got -1.0",
     "--batch-wait-ms must be at least 0, got -1.0"),
])
def test_a_setting_out_of_range_is_one_rule_for_the_library_and_regard_serve(capsys, argv, library, command_line):
    name, value = argv[0][2:].replace("-", "_"), float(argv[1])
    with pytest.raises(ValueError, match=f"^{re.escape(library)}$"):
        ServeSettings(**{name: int(value) if name != "batch_wait_ms" else value})
    assert main(["serve", "--model", "not-loaded", *argv]) == 2  # refused before any model is loaded
    assert capsys.readouterr().err == f"regard: error: {command_line}\n"


def test_the_api_states_the_search_nbest_rule_and_its_limits_as_the_settings_do(app):
    with pytest.raises(ValueError) as rule:
        check_nbest(4, 3)
    response = post(app, {"text": "the cat", "beam": 3, "nbest": 4})
    assert (response.status_code, response.json()) == (422, {"error": str(rule.value)})
    limits = call(app, "GET", "/openapi.json").json()["components"]["schemas"]["Limits"]["properties"]
    assert {name: limits[name]["description"] for name in limits} == {name: setting_help(name) for name in limits}
