"""The demo end to end: the seed's sentence, its attention, and the baseline comparison."""

import json

from regard.demo import run_demo
from regard.translator import Translator


def test_demo_translates_the_black_cat_and_its_attention_shows_the_inversion(tmp_path):
    out = tmp_path / "demo"
    # the demo's own 1,200 steps (without its time limit, so that every machine trains as many):
    # at 400-600 steps the model may still stop after "a mangé" (the grammar's "ate" takes an
    # optional object), depending on the CPU's kernels (seen on Intel with AMX)
    summary = run_demo(out, baseline_steps=100, show_progress=False, max_minutes=0)
    data = json.loads((out / "demo.json").read_text())
    assert set(data) == {"source", "translation", "source_words", "target_words", "attention"}
    assert data["source"] == "the black cat ate the mouse"
    assert data["translation"] == "le chat noir a mangé la souris"
    assert data["source_words"] == ["the", "black", "cat", "ate", "the", "mouse"]
    assert data["target_words"] == ["le", "chat", "noir", "a", "mangé", "la", "souris"]
    rows = data["attention"]
    assert len(rows) == 7 and all(len(r) == 6 and abs(sum(r) - 1) < 1e-5 for r in rows)
    looks_at = {t: data["source_words"][max(range(6), key=row.__getitem__)] for t, row in zip(data["target_words"], rows)}
    assert looks_at["noir"] == "black" and looks_at["chat"] == "cat"
    assert looks_at["a"] == "ate" and looks_at["mangé"] == "ate" and looks_at["souris"] == "mouse"
    assert (out / "attention.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # the saved model is usable on its own, and the comparison covers both models
    assert Translator.load(out / "model").translate(["the black cat ate the mouse"])[0].text == data["translation"]
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["attention"]["all"]["n"] == 500 and acc["attention"]["all"]["accuracy"] > acc["baseline"]["all"]["accuracy"]
    assert summary["accuracy"] == acc
