import json

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
