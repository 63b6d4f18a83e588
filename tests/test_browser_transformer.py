"""The explorer's layer and head selectors for a Transformer, in headless Chromium (as test_browser.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn

from regard.serving import ServeSettings, create_app
from regard.translator import Translator
from tests.test_browser import browser, translated_page  # noqa: F401  (the shared Chromium fixture)

SENTENCE = "the black cat ate the mouse"


@pytest.fixture(scope="module")
def transformer_server(tmp_path_factory, grammar_data) -> Iterator[str]:
    """The base URL of a uvicorn server of a tiny trained Transformer ("tr"), in a thread."""
    from regard.training.trainer import train
    from tests.conftest import tiny_config
    out = tmp_path_factory.mktemp("browser-transformer") / "run"
    cfg = tiny_config(out, steps=30, arch="transformer", d_model=32, heads=2, ff_size=64, encoder_layers=2,
                      decoder_layers=2)
    cfg.data.valid_max_sentences = 4
    train(cfg, data=grammar_data, show_progress=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    uv = uvicorn.Server(uvicorn.Config(create_app({"tr": Translator.load(out)}, ServeSettings()), log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    uv.should_exit = True
    thread.join(timeout=30)
    sock.close()


def cell_weights(panel) -> list[list[float]]:
    """The heat map's weights, read back from the cells' titles ("word ← word: 0.123")."""
    rows = panel.locator("table.heatmap tbody tr")
    return [[float(t.rsplit(":", 1)[1]) for t in rows.nth(i).locator("td").evaluate_all("c => c.map(x => x.title)")]
            for i in range(rows.count())]


def assert_same_weights(drawn: list[list[float]], sent: list[list[float]]) -> None:
    """The heat map shows the matrix the API sent, row by row, to the three decimals drawn."""
    assert [len(row) for row in drawn] == [len(row) for row in sent]
    assert np.asarray(drawn, dtype=float) == pytest.approx(np.asarray(sent, dtype=float), abs=1e-3)


def test_the_layer_and_head_selectors_draw_that_head(transformer_server, browser):  # noqa: F811
    problems: list[str] = []
    page, panel = translated_page(browser, transformer_server, SENTENCE, "tr", problems)
    beam = int(page.locator("#beam").input_value())
    hyp = httpx.post(f"{transformer_server}/api/translate", json={"text": SENTENCE, "beam": beam, "heads": True},
                     timeout=60).json()["results"][0]["hypotheses"][0]
    layer, head = panel.locator('select[data-pick="layer"]'), panel.locator('select[data-pick="head"]')
    assert (layer.input_value(), head.input_value()) == ("1", "-1")  # the last of 2 layers, the heads' mean
    assert_same_weights(cell_weights(panel), hyp["word_attention"])
    layer.select_option("0")
    panel.locator('select[data-pick="head"]').select_option("1")
    assert_same_weights(cell_weights(panel), hyp["head_word_attention"][0][1])
    assert panel.locator('select[data-pick="layer"]').input_value() == "0"  # the choice survives the redraw
    assert problems == []
