"""The attention explorer page in a real browser: Debian's headless Chromium driven by Playwright.

A real ``uvicorn`` server on a free loopback port serves two models (attention
and ``none``); the test types the demo sentence, waits for the translation and
the heat map, hovers words and checks the highlighted alignment, and saves
screenshots under ``runs/browser/``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from regard.data.grammar import DEMO_SENTENCE
from regard.serving import ServeSettings, create_app
from regard.translator import Translator
from tests.serving_models import model_root, trained_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[1] / "runs" / "browser"


def require_chromium() -> None:
    """Skip when Debian's chromium is missing, except in CI, where ``make test`` has installed it."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: 'make test' installs it (make browser)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """(base URL, models) of a uvicorn server on a free 127.0.0.1 port, in a thread."""
    root = model_root(tmp_path_factory)
    models = {"att": Translator.load(trained_model(root, "general")),
              "none": Translator.load(trained_model(root, "none"))}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(create_app(models, ServeSettings()), log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", models
    uv.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def test_type_translate_hover_and_see_the_alignment(server, browser):
    base, models = server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(base) else None)

    page.goto(base + "/")
    page.wait_for_selector("body.ready")
    page.fill("#text", DEMO_SENTENCE)
    page.press("#text", "Enter")
    att = page.locator('.panel[data-model="att"]')
    att.locator("table.heatmap").wait_for()
    page.locator('.panel[data-model="none"] .no-attention').wait_for()
    assert "no attention" in page.locator('.panel[data-model="none"] .no-attention').inner_text()

    # what the API says for the same request (the page's default beam is the model's)
    beam = int(page.locator("#beam").input_value())
    api = httpx.post(f"{base}/api/translate", json={"text": DEMO_SENTENCE, "beam": beam}, timeout=60).json()
    result = api["results"][0]
    hyp = result["hypotheses"][0]
    assert att.locator(".translation").inner_text() == hyp["text"]
    assert att.locator("th.src-label").all_inner_texts() == result["source_words"]
    assert att.locator("th.tgt-label").all_inner_texts() == hyp["target_words"]

    # hover a French word: the English word it looked at most is the highlighted one
    french = hyp["target_words"]
    k = french.index("noir") if "noir" in french else 0
    j = argmax(hyp["word_attention"][k])
    if hyp["text"] == "le chat noir a mangé la souris":
        assert result["source_words"][j] == "black"
    att.locator(f'.sentence.tgt .unit[data-k="{k}"]').hover()
    top = att.locator(".sentence.src .unit.top")
    assert top.count() == 1
    assert top.inner_text() == result["source_words"][j]
    assert top.get_attribute("data-k") == str(j)
    assert att.locator("th.src-label.top").inner_text() == result["source_words"][j]
    assert att.locator(f'th.tgt-label[data-k="{k}"]').get_attribute("class").split().count("focus") == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(200)  # let the highlight transitions finish
    page.screenshot(path=str(SHOTS / "desktop.png"), full_page=True)

    # and the reverse: hover that English word, the French word that looked at it most lights up
    att.locator(f'.sentence.src .unit[data-k="{j}"]').hover()
    i = argmax([row[j] for row in hyp["word_attention"]])
    assert att.locator(".sentence.tgt .unit.top").inner_text() == french[i]

    # subword view: the axes become the subword pieces
    page.click('.toggle button[data-view="subword"]')
    assert att.locator("th.src-label").count() == len(result["source_tokens"])
    assert att.locator("th.tgt-label").count() == len(hyp["tokens"])
    page.click('.toggle button[data-view="word"]')

    # n-best: each hypothesis has its own attention
    page.select_option("#nbest", "3")
    att.locator(".nbest li").nth(2).wait_for()
    nbest = httpx.post(f"{base}/api/translate", json={"text": DEMO_SENTENCE, "beam": beam, "nbest": 3},
                       timeout=60).json()["results"][0]["hypotheses"]
    assert att.locator(".hyp-text").all_inner_texts() == [h["text"] for h in nbest]
    att.locator("button.hyp").nth(1).click()
    assert att.locator("button.hyp").nth(1).get_attribute("aria-pressed") == "true"
    assert att.locator(".translation").inner_text() == nbest[1]["text"]
    assert att.locator("th.tgt-label").all_inner_texts() == nbest[1]["target_words"]

    # a phone-sized screen: nothing sticks out sideways
    att.locator("button.hyp").nth(0).click()
    page.set_viewport_size({"width": 375, "height": 740})
    page.wait_for_timeout(100)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    att.locator(f'.sentence.tgt .unit[data-k="{k}"]').click()  # a tap pins the highlight
    assert att.locator(".sentence.src .unit.top").inner_text() == result["source_words"][j]
    page.wait_for_timeout(200)
    page.screenshot(path=str(SHOTS / "phone.png"), full_page=True)

    assert problems == []
    assert outside == []  # everything came from Regard itself
    assert (SHOTS / "desktop.png").stat().st_size > 10_000


def translated_page(browser, base: str, sentence: str, model: str, problems: list[str] | None = None):
    """A new page of the explorer at ``base`` that has translated ``sentence``, and ``model``'s panel
    once its heat map is drawn; the page's script errors from the start go into ``problems``."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    if problems is not None:
        page.on("pageerror", lambda err: problems.append(str(err)))
    page.goto(base + "/")
    page.wait_for_selector("body.ready")
    page.fill("#text", sentence)
    page.press("#text", "Enter")
    panel = page.locator(f'.panel[data-model="{model}"]')
    panel.locator("table.heatmap").wait_for()
    return page, panel


def test_the_links_toggle_outlines_exactly_the_argmax_cells(server, browser):
    base, _ = server
    page, att = translated_page(browser, base, DEMO_SENTENCE, "att")
    beam = int(page.locator("#beam").input_value())
    hyp = httpx.post(f"{base}/api/translate", json={"text": DEMO_SENTENCE, "beam": beam},
                     timeout=60).json()["results"][0]["hypotheses"][0]
    outlined = lambda: sorted(att.locator("td.link").evaluate_all(  # noqa: E731
        "cells => cells.map(c => [Number(c.dataset.i), Number(c.dataset.j)])"))
    assert outlined() == []
    page.click("#links")
    assert page.locator("#links").get_attribute("aria-pressed") == "true"
    assert outlined() == [[i, argmax(row)] for i, row in enumerate(hyp["word_attention"])]
    SHOTS.mkdir(parents=True, exist_ok=True)
    att.screenshot(path=str(SHOTS / "links.png"))
    page.click('.toggle button[data-view="subword"]')  # the subword heat map's own argmax cells
    assert outlined() == [[i, argmax(row)] for i, row in enumerate(hyp["attention"])]
    page.click("#links")
    assert outlined() == []
