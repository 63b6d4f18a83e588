"""``regard evaluate`` and ``regard plot-bleu``: scores, signatures, length buckets, JSON, charts, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu
import torch

from regard.cli import main
from regard.config import Config, ModelConfig, SearchConfig, TokenizerConfig, TrainConfig
from regard.data.grammar import demo_splits
from regard.evaluation import BUCKETS, bucket_labels, parse_buckets, read_test_set, score
from regard.errors import RegardError
from regard.training.trainer import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grammar_test(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model run folder, test.en, test.fr): a tiny attention model trained for 100 steps on the grammar."""
    folder = tmp_path_factory.mktemp("evaluation")
    train_pairs, heldout = demo_splits(n_train=2000, n_heldout=80, seed=11)
    cfg = Config(tokenizer=TokenizerConfig(src_vocab_size=150, tgt_vocab_size=150),
                 model=ModelConfig(embedding_size=32, encoder_hidden=64, decoder_hidden=128, dropout=0.0,
                                   attention="general"),
                 search=SearchConfig(beam=2),
                 train=TrainConfig(out_dir=str(folder / "run"), seed=2, threads=1, batch_tokens=1000, max_steps=100,
                                   eval_every=100, lr=3e-3, label_smoothing=0.0))
    as_tuples = [(p.en, p.fr) for p in train_pairs], [(p.en, p.fr) for p in heldout[:20]]
    run = train(cfg, data=as_tuples, show_progress=False)
    src, ref = folder / "test.en", folder / "test.fr"
    src.write_text("".join(p.en + "\n" for p in heldout[20:]), encoding="utf-8")
    ref.write_text("".join(p.fr + "\n" for p in heldout[20:]), encoding="utf-8")
    return run, src, ref


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_buckets():
    assert parse_buckets("8,12,16,20") == BUCKETS
    assert bucket_labels(BUCKETS) == ["1-7", "8-11", "12-15", "16-19", "20+"]
    for bad in ("12,8", "x", "1,5", ""):
        with pytest.raises(RegardError, match="--buckets"):
            parse_buckets(bad)


def test_score_signatures_lowercase_and_buckets():
    sources = ["one two three", " ".join(["w"] * 9), " ".join(["w"] * 25)]
    refs = ["Le chat noir mange la souris grise .", "Un homme marche dans la rue vide .", "Deux chiens jouent ici ."]
    perfect = score(refs, refs, sources)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert [(b["words"], b["n"]) for b in perfect["buckets"]] == [("1-7", 1), ("8-11", 1), ("12-15", 0),
                                                                  ("16-19", 0), ("20+", 1)]
    assert [b["bleu"] for b in perfect["buckets"]] == [pytest.approx(100), pytest.approx(100), None, None,
                                                       pytest.approx(100)]
    assert "case:mixed" in perfect["bleu_signature"] and "tok:13a" in perfect["bleu_signature"]
    assert "case:lc" in perfect["bleu_lc_signature"] and "tok:13a" in perfect["bleu_lc_signature"]
    assert "chrF" not in perfect["chrf_signature"] and "nc:6" in perfect["chrf_signature"]
    shouted = score([r.upper() for r in refs], refs, sources)
    assert shouted["bleu"] < 10 and shouted["bleu_lc"] == pytest.approx(100)
    half = score([refs[0], "rien du tout", refs[2]], refs, sources)
    assert half["buckets"][1]["bleu"] == pytest.approx(0) and half["buckets"][0]["bleu"] == pytest.approx(100)


def test_evaluate_two_models_writes_json_and_plot(grammar_test, capsys, tmp_path):
    run, src, ref = grammar_test
    code, out, err = run_cli(capsys, "evaluate", "--model", run, "--model", run / "best", "--name", "att",
                             "--name", "again", "--src", src, "--ref", ref, "--beam", 1,
                             "--json-out", tmp_path / "r.json", "--plot", tmp_path / "bleu.png")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["source"] == str(src) and [r["name"] for r in report["results"]] == ["att", "again"]
    result = report["results"][0]
    refs = ref.read_text(encoding="utf-8").splitlines()
    assert result["beam"] == 1 and result["attention"] == "general" and result["n"] == len(refs) == 60
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(result["hypotheses"], [refs]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(result["hypotheses"], [refs]).score)
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "lowercase=True tokenize=13a" in result["bleu_lc_note"]
    assert sum(b["n"] for b in result["buckets"]) == 60 and [b["words"] for b in result["buckets"]][0] == "1-7"
    assert report["results"][1]["bleu"] == pytest.approx(result["bleu"])  # same model, same greedy output
    assert result["precision"] == "fp32" and result["sentences_per_second"] > 0
    assert (f"att (attention: general, beam 1, 60 sentences, fp32: {result['sentences_per_second']} sentences/s)"
            f"\n  BLEU {result['bleu']:.2f}") in out
    assert "BLEU lower-cased" in out and "BLEU by source length: 1-7:" in out
    png = (tmp_path / "bleu.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_evaluate_with_workers_gives_the_same_translations(grammar_test, monkeypatch):
    from regard.evaluation import evaluate_model
    run, src, ref = grammar_test
    sources, references = read_test_set(src, ref)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: fp32 sums may round differently with other thread counts
    try:
        one = evaluate_model(run, sources, references, beam=2, device="cpu")
    finally:
        torch.set_num_threads(threads)
    two = evaluate_model(run, sources, references, beam=2, workers=2, device="cpu", threads=1)
    assert two["workers"] == 2 and two["hypotheses"] == one["hypotheses"] and two["bleu"] == one["bleu"]
    assert one["device"] == two["device"] == "cpu"


def test_plot_bleu_puts_several_json_files_on_one_chart(grammar_test, capsys, tmp_path):
    run, src, ref = grammar_test
    for name in ("a", "b"):
        assert run_cli(capsys, "evaluate", "--model", run, "--name", name, "--src", src, "--ref", ref, "--beam", 1,
                       "--json-out", tmp_path / f"{name}.json")[0] == 0
    code, _, err = run_cli(capsys, "plot-bleu", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "ab.png")
    assert code == 0 and "ab.png" in err
    assert (tmp_path / "ab.png").read_bytes().startswith(PNG_MAGIC)
    assert run_cli(capsys, "evaluate", "--model", run, "--src", src, "--ref", ref, "--beam", 1, "--buckets", "5,10",
                   "--json-out", tmp_path / "c.json")[0] == 0
    code, _, err = run_cli(capsys, "plot-bleu", tmp_path / "a.json", tmp_path / "c.json", "-o", tmp_path / "x.png")
    assert code == 2 and "different length buckets" in err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("case", ["missing source", "line mismatch", "empty reference line", "names",
                                  "no test set", "no model", "not evaluate json", "bad beam", "bad workers"])
def test_evaluate_errors_are_one_clean_line(grammar_test, capsys, tmp_path, case):
    run, src, ref = grammar_test
    short = tmp_path / "short.fr"
    short.write_text("".join(ref.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    holey = tmp_path / "holey.fr"
    holey.write_text("\n" + "".join(ref.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    (tmp_path / "other.json").write_text('{"bleu": 3}', encoding="utf-8")
    argv, message = {
        "missing source": (["--model", run, "--src", tmp_path / "nope.en", "--ref", ref], "file not found"),
        "line mismatch": (["--model", run, "--src", src, "--ref", short], f"{src}:60: no matching line in {short}"),
        "empty reference line": (["--model", run, "--src", src, "--ref", holey], f"{holey}:1: empty line"),
        "names": (["--model", run, "--name", "a", "--name", "b", "--src", src, "--ref", ref], "2 --name for 1 --model"),
        "no test set": (["--model", run, "--src", src], "give --src and --ref, or --corpus NAME"),
        "no model": (["--model", tmp_path / "nothing", "--src", src, "--ref", ref], "model folder not found"),
        "not evaluate json": (None, "not a 'regard evaluate --json-out' file"),
        "bad beam": (["--model", run, "--src", src, "--ref", ref, "--beam", 0], "--beam must be at least 1"),
        "bad workers": (["--model", run, "--src", src, "--ref", ref, "--workers", 0], "--workers must be at least 1"),
    }[case]
    command = ["plot-bleu", tmp_path / "other.json"] if argv is None else ["evaluate", *argv]
    code, _, err = run_cli(capsys, *command)
    assert code == 2
    assert err.startswith("regard: error: ") and message in err and err.count("\n") == 1
