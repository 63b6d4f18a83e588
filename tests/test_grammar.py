"""Tests for the demo English→French grammar (regard.data.grammar)."""

import random
import re

import pytest

from regard.data import grammar
from regard.data.grammar import (
    ADJECTIVES, DEMO_SENTENCE, DEMO_TRANSLATION, NOUNS, NP, PREPOSITIONS, VERBS, VP,
    Pair, Sentence, demo_splits, generate, render_np, render_pp, render_sentence,
    render_vp, sample_pair,
)

CAT, MOUSE, DOG, HORSE, APPLE = (NOUNS[w] for w in ("cat", "mouse", "dog", "horse", "apple"))
SMALL, BIG, BLACK, WHITE, GREY, RED = (
    ADJECTIVES[w] for w in ("small", "big", "black", "white", "grey", "red"))
EAT, SEE, LIKE = VERBS["eat"], VERBS["see"], VERBS["like"]


def test_demo_pair_is_rendered_from_grammar_structure():
    sentence = Sentence(NP(CAT, adjectives=(BLACK,)), VP(EAT, obj=NP(MOUSE)))
    assert render_sentence(sentence) == Pair(DEMO_SENTENCE, DEMO_TRANSLATION)


@pytest.mark.parametrize("np, expected", [
    (NP(CAT, adjectives=(BLACK,)), ("the black cat", "le chat noir")),
    (NP(MOUSE, adjectives=(BLACK,)), ("the black mouse", "la souris noire")),
    (NP(MOUSE, adjectives=(WHITE,)), ("the white mouse", "la souris blanche")),
    (NP(CAT, definite=False), ("a cat", "un chat")),
    (NP(MOUSE, definite=False, adjectives=(GREY,)), ("a grey mouse", "une souris grise")),
    (NP(APPLE, definite=False), ("an apple", "une pomme")),
    (NP(APPLE, definite=False, adjectives=(RED,)), ("a red apple", "une pomme rouge")),
])
def test_gender_agreement_of_articles_and_adjectives(np, expected):
    assert render_np(np) == expected


@pytest.mark.parametrize("np, expected", [
    (NP(CAT, plural=True, adjectives=(BLACK,)), ("the black cats", "les chats noirs")),
    (NP(MOUSE, plural=True, adjectives=(BLACK,)), ("the black mice", "les souris noires")),
    (NP(HORSE, plural=True, adjectives=(WHITE,)), ("the white horses", "les chevaux blancs")),
    (NP(CAT, plural=True, adjectives=(GREY,)), ("the grey cats", "les chats gris")),
    (NP(APPLE, plural=True, adjectives=(RED,)), ("the red apples", "les pommes rouges")),
])
def test_plural_agreement_and_irregular_plurals(np, expected):
    assert render_np(np) == expected


def test_indefinite_plural_is_rejected():
    with pytest.raises(ValueError):
        render_np(NP(CAT, plural=True, definite=False))


@pytest.mark.parametrize("np, expected", [
    (NP(CAT, adjectives=(SMALL,)), ("the small cat", "le petit chat")),
    (NP(MOUSE, adjectives=(SMALL, BLACK)), ("the small black mouse", "la petite souris noire")),
    (NP(HORSE, plural=True, adjectives=(BIG, WHITE)),
     ("the big white horses", "les grands chevaux blancs")),
    (NP(MOUSE, definite=False, adjectives=(BIG,)), ("a big mouse", "une grande souris")),
])
def test_size_adjectives_precede_and_colours_follow_the_french_noun(np, expected):
    assert render_np(np) == expected


@pytest.mark.parametrize("vp, plural, expected", [
    (VP(EAT, obj=NP(MOUSE)), False, ("ate the mouse", "a mangé la souris")),
    (VP(EAT, obj=NP(MOUSE)), True, ("ate the mouse", "ont mangé la souris")),
    (VP(EAT, present=True, obj=NP(MOUSE)), False, ("eats the mouse", "mange la souris")),
    (VP(EAT, present=True), True, ("eat", "mangent")),
    (VP(SEE, present=True, obj=NP(DOG)), False, ("sees the dog", "voit le chien")),
    (VP(SEE, present=True, obj=NP(DOG)), True, ("see the dog", "voient le chien")),
    (VP(LIKE, present=True), True, ("like", "aiment")),
    (VP(SEE), True, ("saw", "ont vu")),
])
def test_verb_tense_and_subject_agreement(vp, plural, expected):
    assert render_vp(vp, plural_subject=plural) == expected


def test_relative_clause_verb_agrees_with_its_head_noun():
    subject = NP(CAT, plural=True, relative=VP(SEE, present=True, obj=NP(DOG)))
    pair = render_sentence(Sentence(subject, VP(EAT, present=True)))
    assert pair == Pair("the cats that see the dog eat", "les chats qui voient le chien mangent")
    subject = NP(CAT, relative=VP(SEE, obj=NP(DOG)))
    pair = render_sentence(Sentence(subject, VP(EAT, obj=NP(MOUSE))))
    assert pair == Pair("the cat that saw the dog ate the mouse",
                        "le chat qui a vu le chien a mangé la souris")


@pytest.mark.parametrize("prep, np, expected", [
    ("near", NP(NOUNS["house"]), ("near the house", "près de la maison")),
    ("near", NP(NOUNS["garden"]), ("near the garden", "près du jardin")),
    ("near", NP(CAT, plural=True, adjectives=(BLACK,)),
     ("near the black cats", "près des chats noirs")),
    ("under", NP(NOUNS["table"], adjectives=(RED,)),
     ("under the red table", "sous la table rouge")),
    ("in", NP(NOUNS["garden"]), ("in the garden", "dans le jardin")),
])
def test_prepositional_phrases_and_de_contraction(prep, np, expected):
    assert render_pp(PREPOSITIONS[prep], np) == expected


def test_generate_is_deterministic_distinct_and_seed_dependent():
    pairs = generate(300, seed=1)
    assert pairs == generate(300, seed=1)
    assert pairs != generate(300, seed=2)
    assert len({p.en for p in pairs}) == 300


def test_same_english_always_gets_the_same_french():
    rng, seen = random.Random(3), {}
    for _ in range(5000):
        pair = sample_pair(rng)
        assert seen.setdefault(pair.en, pair.fr) == pair.fr


def test_max_depth_zero_has_no_relative_clauses():
    rng = random.Random(0)
    pairs = [sample_pair(rng, max_depth=0) for _ in range(500)]
    assert not any("that" in p.en.split() or "qui" in p.fr.split() for p in pairs)


def test_demo_splits_are_disjoint_and_hold_out_the_demo():
    train, heldout = demo_splits(n_train=3000, n_heldout=300, seed=0)
    assert len(train) == 3000 and len(heldout) == 300
    assert heldout[0] == Pair(DEMO_SENTENCE, DEMO_TRANSLATION)
    train_en = {p.en for p in train}
    assert DEMO_SENTENCE not in train_en
    assert not train_en & {p.en for p in heldout}
    assert len({p.en for p in heldout}) == 300
    assert (train, heldout) == demo_splits(n_train=3000, n_heldout=300, seed=0)


def test_demo_splits_keep_the_demo_out_of_train_even_when_sampled(monkeypatch):
    real_sample_pair, calls = grammar.sample_pair, []

    def demo_every_third_call(rng, max_depth=1):
        calls.append(1)
        if len(calls) % 3 == 1:
            return Pair(DEMO_SENTENCE, DEMO_TRANSLATION)
        return real_sample_pair(rng, max_depth)

    monkeypatch.setattr(grammar, "sample_pair", demo_every_third_call)
    train, heldout = demo_splits(n_train=50, n_heldout=10, seed=0)
    assert DEMO_SENTENCE not in {p.en for p in train + heldout[1:]}
    assert heldout[0].en == DEMO_SENTENCE


def test_lengths_span_short_and_long_sentences():
    lengths = [len(p.en.split()) for p in generate(2000, seed=0)]
    assert min(lengths) <= 4 and max(lengths) >= 16
    assert sum(n <= 6 for n in lengths) > 200
    assert sum(n >= 12 for n in lengths) > 200
    assert 5 <= sorted(lengths)[len(lengths) // 2] <= 10


def test_text_is_clean_lower_case_words_without_elision():
    word = re.compile(r"^[a-zàâçéèêëîïôûù]+$")
    for pair in generate(2000, seed=4):
        for text in (pair.en, pair.fr):
            assert text == text.strip() and "  " not in text
            assert all(word.match(w) for w in text.split()), text
    assert "'" not in DEMO_TRANSLATION
