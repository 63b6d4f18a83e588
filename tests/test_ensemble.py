"""Ensembles: several models through the one search, their log-probabilities averaged."""

import pytest
import torch

from regard.data.batching import Batch
from regard.data.tokenizer import BOS, EOS
from regard.model.ensemble import Ensemble
from regard.search.beam import beam_search
from regard.search.common import length_penalty
from regard.search.greedy import greedy_search
from tests.conftest import random_batch, random_model, random_transformer, save_random


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_an_ensemble_of_a_model_with_itself_is_the_model(arch):
    model = random_model("general", seed=4) if arch == "rnn" else random_transformer(seed=4)
    twice = Ensemble([model, model])
    src, lengths = random_batch(batch=5)
    for beam in (1, 3):
        alone = beam_search(model, src, lengths, beam=beam, nbest=beam)
        both = beam_search(twice, src, lengths, beam=beam, nbest=beam)
        for a, b in zip(alone, both):
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
            assert all(torch.allclose(x.attention, y.attention) for x, y in zip(a, b))


@torch.no_grad()
def ensemble_forced_score(models, src, length, tokens, alpha):
    """Teacher-forced score under the normalised mean of the models' log-probabilities."""
    ys = tokens + [EOS]
    batch = Batch(src, torch.tensor([length]), torch.tensor([[BOS] + ys[:-1]]), torch.tensor([ys]))
    mean = sum(torch.log_softmax(m(batch)[0][0].float(), -1) for m in models) / len(models)
    logp = torch.log_softmax(mean, -1)[torch.arange(len(ys)), torch.tensor(ys)]
    return float(logp.sum()) / length_penalty(len(ys), alpha)


def test_an_rnn_and_a_transformer_decode_together_with_teacher_forced_scores():
    members = [random_model("general", seed=3), random_transformer(seed=3)]
    ensemble = Ensemble(members)
    src, lengths = random_batch(batch=4)
    greedy = greedy_search(ensemble, src, lengths, alpha=1.0)
    beams = beam_search(ensemble, src, lengths, beam=4, nbest=2, alpha=1.0)
    for b, (g, hyps) in enumerate(zip(greedy, beams)):
        n = int(lengths[b])
        assert beam_search(ensemble, src[b:b + 1, :n], lengths[b:b + 1], beam=1)[0][0].tokens == g.tokens
        for h in [g, *hyps]:
            assert h.score == pytest.approx(ensemble_forced_score(members, src[b:b + 1, :n], n, h.tokens, 1.0),
                                            abs=1e-4)
        alone = members[0](Batch(src[b:b + 1, :n], lengths[b:b + 1], torch.tensor([[BOS] + hyps[0].tokens]),
                                 torch.tensor([hyps[0].tokens + [EOS]])))[1][0]
        assert torch.allclose(hyps[0].attention, alone, atol=1e-5)  # the first model's attention


def test_translator_ensembles_say_whose_attention_they_show(tmp_path, tiny_tokenizer):
    from regard.translator import Translator
    V = len(tiny_tokenizer)
    a = save_random(tmp_path / "a", random_transformer(vocab=V, seed=1), tiny_tokenizer)
    b = save_random(tmp_path / "b", random_model(vocab=V, seed=2), tiny_tokenizer)
    single = Translator.load(a)
    same = Translator.load([a, a])
    mixed = Translator.load([a, b])
    texts = ["le chat noir", "la souris"]
    for x, y in zip(single.translate(texts, beam=2), same.translate(texts, beam=2)):
        assert (x.text, x.attention) == (y.text, y.attention) and x.score == pytest.approx(y.score, abs=1e-5)
        assert x.attention_from is None and y.attention_from == str(a)
        assert "attention_from" not in x.to_dict() and y.to_dict()["attention_from"] == str(a)
    assert len(mixed.translate(texts, beam=3)) == 2
    rnn = Translator.load(b).model
    assert mixed.model.count_parameters() == single.model.count_parameters() + rnn.count_parameters()


def test_models_with_other_subwords_cannot_form_an_ensemble(tmp_path, tiny_tokenizer, capsys):
    from regard.cli import main
    from regard.data.grammar import demo_splits
    from regard.data.tokenizer import Tokenizer
    from regard.errors import RegardError
    from regard.translator import Translator
    other_tok = Tokenizer.train([p.fr for p in demo_splits(n_train=300, n_heldout=2, seed=9)[0]], 50)
    a = save_random(tmp_path / "a", random_transformer(vocab=len(tiny_tokenizer)), tiny_tokenizer)
    b = save_random(tmp_path / "b", random_transformer(vocab=len(other_tok)), other_tok)
    with pytest.raises(RegardError, match="target subword models differ"):
        Translator.load([a, b])
    assert main(["translate", "--model", str(a), "--model", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("regard: error: cannot ensemble") and len(err.splitlines()) == 1


def test_evaluate_scores_models_and_ensembles_side_by_side(tmp_path, tiny_tokenizer, capsys):
    import json

    from regard.cli import main
    V = len(tiny_tokenizer)
    a = save_random(tmp_path / "a", random_transformer(vocab=V, seed=1), tiny_tokenizer)
    b = save_random(tmp_path / "b", random_model(vocab=V, seed=2), tiny_tokenizer)
    (tmp_path / "t.en").write_text("the black cat\nthe dogs eat\n")
    (tmp_path / "t.fr").write_text("le chat noir\nles chiens mangent\n")
    code = main(["evaluate", "--model", str(a), "--ensemble", f"{a},{b}", "--src", str(tmp_path / "t.en"),
                 "--ref", str(tmp_path / "t.fr"), "--beam", "2", "--json-out", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [r["name"] for r in results] == ["a", "a+b"]
    assert "ensemble" not in results[0] and results[1]["ensemble"] == [str(a), str(b)]
    assert results[0]["attention"] == results[1]["attention"] == "multi-head"  # the first model's
    assert "a+b (ensemble of 2, the first's attention: multi-head, beam 2" in out
    test_set = ["--src", str(tmp_path / "t.en"), "--ref", str(tmp_path / "t.fr")]
    assert main(["evaluate", "--ensemble", str(a), *test_set]) == 2
    assert "give two or more model folders" in capsys.readouterr().err


def test_translate_and_plot_run_an_ensemble_and_say_whose_attention_they_show(tmp_path, tiny_tokenizer, capsys,
                                                                              monkeypatch):
    import json

    import regard.plotting
    from regard.cli import main
    from regard.translator import Translator
    V = len(tiny_tokenizer)
    a = save_random(tmp_path / "a", random_transformer(vocab=V, seed=1), tiny_tokenizer)
    b = save_random(tmp_path / "b", random_model(vocab=V, seed=2), tiny_tokenizer)
    texts = ["the black cat", "", "the dogs eat the mouse"]
    (tmp_path / "in.en").write_text("\n".join(texts) + "\n")
    expected = Translator.load([a, b]).translate(texts, beam=2)
    for workers in ("1", "2"):  # one process, then the worker pool: the same output
        out = tmp_path / f"out{workers}.jsonl"
        code = main(["translate", "--model", str(a), "--model", str(b), "--beam", "2", "--json",
                     "--workers", workers, "-i", str(tmp_path / "in.en"), "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 0, err
        assert f"ensemble of 2 models; the attention in --json output is the first's ({a})" in err
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["text"] for r in rows] == [t.text for t in expected]
        assert [rows[i]["attention_from"] for i in (0, 2)] == [str(a)] * 2  # the non-empty lines
    titles = []
    monkeypatch.setattr(regard.plotting, "plot_attention",
                        lambda weights, src, tgt, path, title, label: titles.append(title) or path)
    assert main(["plot", "--model", str(a), "--model", str(b), "the black cat", "-o", str(tmp_path / "p.png")]) == 0
    assert titles and titles[0].endswith(f"attention of the ensemble's first model, {a}")
