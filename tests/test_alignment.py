"""Word alignment: link rules, symmetrisation, AER, gold files, detokenisation, forced attention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regard.alignment.detok import detokenize, piece_units, tokens_of_words
from regard.alignment.gold import GoldAlignment, read_naacl, read_pharaoh
from regard.alignment.links import extract, format_pharaoh, parse_pharaoh, transpose
from regard.alignment.score import score
from regard.alignment.symmetrize import symmetrize
from regard.cli import main
from regard.errors import RegardError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "alignment"


def test_aer_against_a_hand_worked_example():
    # Sentence 1: S = {0-0, 1-1}, P-only = {1-2}; A = {0-0, 1-2, 2-2}: |A∩S| = 1, |A∩P| = 2.
    # Sentence 2: S = {0-0}; A = {0-0}: |A∩S| = 1, |A∩P| = 1.
    gold = [GoldAlignment({(0, 0), (1, 1)}, {(1, 2)}), GoldAlignment({(0, 0)}, set())]
    result = score([{(0, 0), (1, 2), (2, 2)}, {(0, 0)}], gold)
    assert (result.predicted, result.sure, result.possible) == (4, 3, 4)
    assert result.precision == pytest.approx(3 / 4)  # (2 + 1) / 4
    assert result.recall == pytest.approx(2 / 3)  # (1 + 1) / 3
    assert result.aer == pytest.approx(1 - (2 + 3) / (4 + 3))


def test_link_rules():
    weights = [[0.7, 0.2, 0.1], [0.4, 0.45, 0.15]]  # 2 target words × 3 source words
    assert extract(weights, "argmax") == {(0, 0), (1, 1)}
    assert extract(weights, "threshold", 0.3) == {(0, 0), (0, 1), (1, 1)}
    assert extract(weights, "threshold", 0.5) == {(0, 0)}
    assert extract(weights, "both", 0.5) == {(0, 0), (1, 1)}
    with pytest.raises(ValueError, match="unknown rule"):
        extract(weights, "max")


def test_symmetrizations():
    forward, backward = {(0, 0), (1, 1), (4, 4)}, {(0, 0), (1, 1), (4, 3), (1, 2)}
    assert symmetrize(forward, backward, "intersection") == {(0, 0), (1, 1)}
    assert symmetrize(forward, backward, "union") == forward | backward
    # grow-diag adds 1-2 (next to 1-1, target 2 unaligned), not 4-3 or 4-4 (next to no chosen link)
    assert symmetrize(forward, backward, "grow-diag") == {(0, 0), (1, 1), (1, 2)}
    # final-and: forward's 4-4 joins two unaligned words; then backward's 4-3 has source 4 aligned
    assert symmetrize(forward, backward, "grow-diag-final-and") == {(0, 0), (1, 1), (1, 2), (4, 4)}
    # growth goes on from the links it adds: 1-2 brings 2-3, which brings 3-3
    assert symmetrize({(1, 1), (3, 3)}, {(1, 1), (1, 2), (2, 3)}, "grow-diag") == {(1, 1), (1, 2), (2, 3), (3, 3)}
    assert transpose({(1, 2)}) == {(2, 1)}


def test_pharaoh_format_round_trip_and_errors():
    links = {(2, 1), (0, 0), (10, 3)}
    assert format_pharaoh(links) == "0-0 2-1 10-3"
    assert parse_pharaoh("0-0 2-1 10-3\n") == links
    assert parse_pharaoh("1?2") == {(1, 2)}
    for bad in ("0-", "a-1", "1-2-3", "-1-2"):
        with pytest.raises(ValueError, match="malformed"):
            parse_pharaoh(bad)


def test_gold_file_is_read_one_based_and_checked(tmp_path):
    gold = tmp_path / "g.wa"
    gold.write_text("1 1 1 S\n1 2 3 P\n0002 1 2\n")
    read = read_naacl(gold, [2, 1], [3, 2])
    assert read[0].sure == {(0, 0)} and read[0].possible == {(1, 2)}
    assert read[1].sure == {(0, 1)}  # no label: sure
    assert read_naacl(gold, reverse=True)[0].possible == {(2, 1)}
    for line, message in (("1 3 1 S", "g.wa:1: source position 3 out of range 1–2"),
                          ("3 1 1 S", "g.wa:1: sentence 3 out of range"),
                          ("1 1 1 X", "g.wa:1: link label must be S or P"),
                          ("1 1", "g.wa:1: expected"), ("1 0 1 S", "g.wa:1: .*positive integers"),
                          ("1 1 S", "g.wa:1: .*positive integers .*got '1 1 S'")):
        gold.write_text(line + "\n")
        with pytest.raises(RegardError, match=message):
            read_naacl(gold, [2, 1], [3, 2])


def test_predicted_links_file_is_checked(tmp_path):
    links = tmp_path / "a.txt"
    links.write_text("0-0 1-2\n\n")
    assert read_pharaoh(links, [2, 1], [3, 1]) == [{(0, 0), (1, 2)}, set()]
    links.write_text("0-0 1-3\n\n")
    with pytest.raises(RegardError, match="a.txt:1: link 1-3 out of range"):
        read_pharaoh(links, [2, 1], [3, 1])
    links.write_text("0-0\n")
    with pytest.raises(RegardError, match="1 lines, but the gold has 2"):
        read_pharaoh(links, [2, 1], [3, 1])
    links.write_text("0-0 x\n\n")
    with pytest.raises(RegardError, match="a.txt:1: malformed link 'x'"):
        read_pharaoh(links)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/alignment")
def test_shared_gold_sets_read_with_their_documented_counts():
    for name, sure, possible in (("dev", 338, 1446), ("test", 4038, 13400)):
        src = [line.split() for line in (SHARED / f"{name}.e").read_text().splitlines()]
        tgt = [line.split() for line in (SHARED / f"{name}.f").read_text().splitlines()]
        gold = read_naacl(SHARED / f"{name}.wa.nonullalign", [len(s) for s in src], [len(t) for t in tgt])
        assert sum(len(g.sure) for g in gold) == sure and sum(len(g.possible) for g in gold) == possible


def test_french_detokenisation_undoes_contractions_and_elisions():
    tokens = "je ne ai pas le avis de le ministre de le opposition , à les gens de les pays .".split()
    out = detokenize(tokens, "fr", capitalize=True)
    assert out.text == "Je n'ai pas l'avis du ministre de l'opposition, aux gens des pays."
    word = lambda k: out.text[slice(*out.spans[k])]  # noqa: E731
    assert word(1) == "n'" and word(2) == "ai"
    assert word(6) == word(7) == "du"  # "de le" became one word: both tokens point at it
    assert word(9) == "de" and word(10) == "l'" and word(11) == "opposition"
    assert detokenize("peut - être aujourd' hui".split(), "fr").text == "peut-être aujourd'hui"


def test_english_and_plain_detokenisation():
    out = detokenize("i think the minister 's view ( today ) is right .".split(), "en")
    assert out.text == "I think the minister's view (today) is right."
    assert detokenize(["a", ",", "b"], "none").text == "a , b"


def test_tokens_map_onto_model_words():
    # "Je n'ai" as the model's words: "Je" (0-2), " n'ai" (2-7)
    out = detokenize(["je", "ne", "ai"], "fr", capitalize=True)
    assert tokens_of_words(out.spans, [(0, 2), (2, 7)]) == [0, 1, 1]


def test_units_split_a_word_where_its_subwords_split_its_tokens():
    # "for debate, the": tokens for | debate | , | the; subwords ▁for | ▁deb | ate | , | ▁the
    tokens = [(0, 3), (4, 10), (10, 11), (12, 15)]
    assert piece_units([(0, 3), (3, 7), (7, 10), (10, 11), (11, 15)], tokens) == [0, 1, 1, 2, 3]
    # one subword over two tokens ("du" for "de le") makes one unit of both
    assert piece_units([(0, 2), (2, 7)], [(0, 2), (0, 2), (3, 7)]) == [0, 1]
    # a lone "▁" before "(" goes with it; trailing spaces go with the last unit
    assert piece_units([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], [(0, 1), (2, 3), (3, 4)]) == [0, 1, 1, 2, 2]
    assert piece_units([(0, 1)], []) == [0]


def test_forced_links_of_punctuation_glued_to_a_word_are_its_own(trained_run):
    from regard.alignment.forced import Side
    from regard.translator import Translator
    tok = Translator.load(trained_run / "best").src_tok
    side = Side.read(tok, ["the", "cat", ",", "the", "dog", "."], "en", capitalize=False)
    ids, spans = tok.encode_with_spans("the cat, the dog.")
    assert (7, 8) in spans and (16, 17) in spans  # "," and "." are subwords of their own: so are their units
    assert side.unit_of_token == [0, 1, 2, 3, 4, 5] and len(side.unit_of_piece) == len(ids)


def test_forced_attention_of_the_models_own_translation_is_its_attention(trained_run):
    from regard.alignment.forced import Side, forced_word_attention
    from regard.translator import Translator
    translator = Translator.load(trained_run / "best")
    found = translator.translate(["the black cat ate the mouse", "a small dog sees the big house"], beam=1)
    sides = []
    for t, tok in ((t, tok) for t in found for tok in (translator.src_tok, translator.tgt_tok)):
        ids = tok.encode(t.source) if tok is translator.src_tok else t.token_ids
        words, word_of_piece = tok.words(ids)
        sides.append(Side(words, ids, word_of_piece, list(range(len(words))), 0))
    forced = forced_word_attention(translator, sides[0::2], sides[1::2], batch_size=8)
    for translation, weights in zip(found, forced):
        assert torch.allclose(torch.tensor(weights), torch.tensor(translation.word_attention), atol=1e-5)


def test_align_gives_one_link_per_target_word_and_rows_summing_to_one(trained_run):
    from regard.translator import Translator
    translator = Translator.load(trained_run / "best")
    aligned = translator.align(["the black cat ate the mouse", ""], ["le chat noir a mangé la souris", "le"])
    first = aligned[0]
    assert first.target_tokens == "le chat noir a mangé la souris".split()
    assert len(first.weights) == 7 and all(len(row) == 6 for row in first.weights)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in first.weights)
    assert sorted(j for _, j in first.links) == list(range(7))  # argmax: each target word once
    assert aligned[1].links == set() and aligned[1].weights == [[]]


def test_align_and_evaluate_alignment_commands(trained_run, tmp_path, capsys):
    src, tgt, gold = tmp_path / "s.en", tmp_path / "t.fr", tmp_path / "g.wa"
    src.write_text("the black cat\nthe dog\n")
    tgt.write_text("le chat noir\nle chien\n")
    gold.write_text("1 1 1 S\n1 2 3 S\n1 3 2 S\n2 1 1 S\n2 2 2 P\n")
    links, js = tmp_path / "links.txt", tmp_path / "a.jsonl"
    model = str(trained_run / "best")
    assert main(["align", "--model", model, "--src", str(src), "--tgt", str(tgt), "-o", str(links),
                 "--json", str(js), "--rule", "both"]) == 0
    lines = links.read_text().splitlines()
    assert len(lines) == 2 and all(parse_pharaoh(line) for line in lines)
    assert len(js.read_text().splitlines()) == 2
    assert main(["evaluate-alignment", "--gold", str(gold), "--links", str(links), "--src", str(src),
                 "--tgt", str(tgt)]) == 0
    assert "AER" in capsys.readouterr().out
    tgt.write_text("le chat noir\n")
    assert main(["align", "--model", model, "--src", str(src), "--tgt", str(tgt)]) == 2
    assert "line-aligned" in capsys.readouterr().err


def test_tokenize_writes_what_the_gold_sets_write_and_detokenize_undoes_it():
    from regard.alignment.detok import tokenize
    tokens = tokenize("Je n'ai pas l'avis du ministre, aux gens d'Europe aujourd'hui.", "fr")
    assert tokens == "je ne ai pas le avis de le ministre , à les gens de europe aujourd' hui .".split()
    assert detokenize(tokens, "fr", capitalize=True).text == "Je n'ai pas l'avis du ministre, aux gens d'europe aujourd'hui."
    assert tokenize("I don't think the minister's view (today) is right.", "en") == \
        "i do n't think the minister 's view ( today ) is right .".split()


def test_links_picture(tmp_path):
    from regard.alignment.plot import plot_links
    path = plot_links([[0.9, 0.1], [0.2, 0.8]], ["black", "cat"], ["chat", "noir"], tmp_path / "a.png",
                      GoldAlignment({(1, 0)}, {(0, 1)}), {(0, 0), (1, 1)}, title="t")
    assert path.stat().st_size > 5000


def test_guide_spreads_word_links_over_subwords_and_the_loss_prefers_the_guide():
    from regard.alignment.guide import guide_matrix, guided_loss
    # source words: "black"(pieces 0,1) "cat"(2); target words: "chat"(0) "noir"(1, 2); noir-black, chat-cat
    guide = guide_matrix({(0, 1), (1, 0)}, [0, 0, 1], [0, 1, 1])
    assert guide.tolist() == [[0, 0, 1], [0.5, 0.5, 0], [0.5, 0.5, 0]]
    assert guide_matrix(set(), [0], [0, 1]).sum() == 0  # no links: nothing guided
    close = torch.tensor([[[0.05, 0.05, 0.9], [0.45, 0.45, 0.1], [0.45, 0.45, 0.1]]])
    far = torch.tensor([[[0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.1, 0.1, 0.8]]])
    assert guided_loss(close, guide[None]) < guided_loss(far, guide[None])
    unguided = torch.zeros(1, 3, 3)
    assert guided_loss(far, unguided) == 0


def test_align_checks_its_outputs_and_threshold_before_any_work(tmp_path, capsys, monkeypatch):
    import regard.translator
    monkeypatch.setattr(regard.translator.Translator, "load", lambda *a, **k: pytest.fail("loaded a model"))
    src = tmp_path / "s.en"
    src.write_text("a\n")
    base = ["align", "--model", "m", "--src", str(src), "--tgt", str(src)]
    assert main(base + ["-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(base + ["--json", str(tmp_path / "no" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base + ["--threshold", "0"]) == 2
    assert "--threshold" in capsys.readouterr().err
