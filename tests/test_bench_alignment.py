import json
from pathlib import Path

import pytest

from bench import alignment


def test_the_report_lists_each_method_with_its_dev_aer_and_each_models_bleu(tmp_path, monkeypatch):
    monkeypatch.setattr(alignment, "RESULTS", tmp_path)
    rows = [{"set": s, "method": m, "aer": a, "precision": 0.9, "recall": 0.8, "rule": "threshold", "threshold": 0.3}
            for s, m, a in (("dev", "grow-diag", 0.25), ("test", "grow-diag", 0.2), ("dev", "en→fr", 0.3),
                            ("test", "en→fr", 0.31))]
    (tmp_path / "attention.json").write_text(json.dumps({"system": "attention", "rows": rows}))
    (tmp_path / "bleu-alignment-en-fr.json").write_text(json.dumps(
        {"results": [{"name": "alignment-en-fr", "bleu": 50.123, "chrf": 70.0, "bleu_lc": 51.0}]}))
    table = alignment.report().splitlines()
    assert "| attention | grow-diag | threshold 0.3 | 25.0 | 20.0 | 90.0 | 80.0 |" in table
    assert "| attention | en→fr | threshold 0.3 | 30.0 | 31.0 | 90.0 | 80.0 |" in table
    assert "| alignment-en-fr | 50.12 | 70.00 | 51.00 |" in table


def test_a_failed_training_stops_the_study_naming_the_model_and_its_log(tmp_path, monkeypatch):
    monkeypatch.setattr(alignment, "RESULTS", tmp_path)
    with pytest.raises(SystemExit, match="training failed: no-such-recipe"):
        alignment.train_side_by_side(0.1, ("no-such-recipe",))
    assert "no-such-recipe.yaml" in (tmp_path / "train-no-such-recipe.log").read_text()


def test_pictures_show_the_sentences_where_attention_and_gold_differ_most(trained_run, tmp_path, monkeypatch):
    from regard.alignment import plot
    from regard.alignment.gold import GoldAlignment
    from regard.translator import Translator
    en = ["the black cat ate the mouse".split(), "the dog sees the house".split(), "a big dog".split()]
    fr = ["le chat noir a mangé la souris".split(), "le chien voit la maison".split(), "un grand chien".split()]
    found = Translator.load(trained_run / "best").align([" ".join(s) for s in en], [" ".join(t) for t in fr])
    everything = [{(i, j) for i in range(len(s)) for j in range(len(t))} for s, t in zip(en, fr)]
    gold = [GoldAlignment(sure=found[0].links),  # agrees with the argmax links
            GoldAlignment(sure=everything[1] - found[1].links),  # disagrees everywhere
            GoldAlignment(sure=set(list(found[2].links)[:1]))]  # misses a little
    monkeypatch.setattr(alignment, "gold_sets", lambda: {"test": (en, fr, gold)})
    drawn = []
    monkeypatch.setattr(plot, "plot_links", lambda weights, source, target, path, **kw: drawn.append(
        (Path(path).name, source, kw["gold"], kw["links"])) or Path(path))
    paths = alignment.draw_pictures({"a": trained_run / "best", "b": trained_run / "best"}, count=2, out=tmp_path)
    assert [p.name for p in paths] == ["alignment-a-1.png", "alignment-a-2.png", "alignment-b-1.png",
                                       "alignment-b-2.png"]
    assert [d[1] for d in drawn] == [en[1], en[2], en[1], en[2]]  # most disagreement first, same for every model
    assert drawn[0][2] is gold[1] and drawn[0][3] == found[1].links
