"""Pre-tokenised text onto a model's own text, keeping track of where each token went.

Gold alignment sets come tokenised: punctuation split off, French contractions expanded
("du" → "de le", "l'avis" → "le avis"), lower-cased. A model trained on ordinary text reads
such input badly, so :func:`detokenize` rebuilds ordinary text and records the characters
each given token became. Links are found between units, the smallest runs of the model's
subwords and the given tokens that cover each other (:func:`piece_units`), and reported on the
given tokens (:func:`tokens_of_words`): "du" aligned to "of the" links both "de" and "le" to
both, while "debate," split into the subwords "▁debate" and "," stays two units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VOWELS = set("aeiouyhàâäéèêëîïôöûùüœæ")


@dataclass(frozen=True)
class Language:
    """Detokenisation rules for one language; the empty default only rejoins tokens."""

    glue_left: frozenset[str] = frozenset()  # tokens written without a space before them
    glue_right: frozenset[str] = frozenset()  # tokens written without a space after them
    contractions: dict[tuple[str, str], str] = field(default_factory=dict)  # ("de", "le") → "du"
    elisions: dict[str, str] = field(default_factory=dict)  # "le" → "l'" before a vowel
    replacements: dict[str, str] = field(default_factory=dict)  # "i" → "I"


_PUNCT_LEFT = frozenset({",", ".", ")", "]", "}", "%", "...", "-"})
LANGUAGES: dict[str, Language] = {
    "none": Language(),
    "en": Language(glue_left=_PUNCT_LEFT | {";", ":", "!", "?", "'s", "'re", "'ll", "'ve", "'m", "'d", "n't"},
                   glue_right=frozenset({"(", "[", "{", "-"}), replacements={"i": "I"}),
    "fr": Language(glue_left=_PUNCT_LEFT, glue_right=frozenset({"(", "[", "{", "-"}),
                   contractions={("de", "le"): "du", ("de", "les"): "des", ("à", "le"): "au",
                                 ("à", "les"): "aux"},
                   elisions={w: w[:-1] + "'" for w in ("le", "la", "de", "je", "me", "te", "se", "ne", "que",
                                                       "ce", "lorsque", "puisque", "quelque", "jusque")}),
}
LANGUAGE_HELP = ("rules that turn tokenised input back into ordinary text before the model reads it: "
                 "none (rejoin with spaces), en, fr (contractions such as 'de le' → 'du' and elisions "
                 "such as 'le avis' → \"l'avis\")")


@dataclass(frozen=True)
class Detokenized:
    """Ordinary text and, for each given token, the ``(start, end)`` characters it became."""

    text: str
    spans: list[tuple[int, int]]


def detokenize(tokens: list[str], language: str = "none", capitalize: bool = False) -> Detokenized:
    """Join ``tokens`` into ordinary text by the rules of ``language`` (a key of :data:`LANGUAGES`).

    ``capitalize``: also upper-case the first letter (for lower-cased gold sets).
    """
    rules = LANGUAGES[language]
    pieces: list[tuple[str, list[int]]] = []  # (text written, indices of the tokens it stands for)
    k = 0
    while k < len(tokens):
        word, used = _rewrite(tokens, k, rules)
        pieces.append((word, list(range(k, k + used))))
        k += used
    text, spans = "", [(0, 0)] * len(tokens)
    for n, (word, used) in enumerate(pieces):
        if n and not _glued(pieces[n - 1][0], word, tokens, used, rules):
            text += " "
        for k in used:
            spans[k] = (len(text), len(text) + len(word))
        text += word
    if capitalize and text[:1].islower():
        text = text[0].upper() + text[1:]
    return Detokenized(text, spans)


def _rewrite(tokens: list[str], k: int, rules: Language) -> tuple[str, int]:
    """The text written for ``tokens[k]`` (and perhaps the next one), and how many it used."""
    token, nxt = tokens[k], tokens[k + 1] if k + 1 < len(tokens) else ""
    after = tokens[k + 2] if k + 2 < len(tokens) else ""
    pair = (token.lower(), nxt.lower())
    if pair in rules.contractions and not (pair[1] in rules.elisions and _vowel(after)):
        return _same_case(rules.contractions[pair], token), 2
    if token.lower() in rules.elisions and _vowel(nxt):
        return _same_case(rules.elisions[token.lower()], token), 1
    return rules.replacements.get(token, token), 1


def _glued(previous: str, word: str, tokens: list[str], used: list[int], rules: Language) -> bool:
    """Whether ``word`` follows ``previous`` without a space."""
    return (tokens[used[0]] in rules.glue_left or previous in rules.glue_right
            or previous.endswith("'") and len(previous) > 1)


def _vowel(word: str) -> bool:
    return word[:1].lower() in VOWELS


def _same_case(word: str, model: str) -> str:
    return word[0].upper() + word[1:] if model[:1].isupper() else word


_WORDS = {"en": re.compile(r"n't|'\w+|\w+(?=n't)|\w+|[^\w\s]"), "fr": re.compile(r"\w+'|\w+|[^\w\s]")}


def tokenize(text: str, language: str = "none") -> list[str]:
    """Ordinary text → tokens the way the gold sets write them: lower-cased, punctuation split
    off, and the contractions and elisions of ``language``'s rules expanded (the inverse of
    :func:`detokenize`: "l'avis du" → "le avis de le")."""
    rules = LANGUAGES[language]
    words = _WORDS.get(language, _WORDS["fr"]).findall(text.lower().replace("\u2019", "'"))
    expand = {short: list(pair) for pair, short in rules.contractions.items()}
    for full, elided in reversed(list(rules.elisions.items())):  # the first full form wins: l' → le
        expand[elided] = [full]
    return [token for word in words for token in expand.get(word, [word])]


def piece_units(piece_spans: list[tuple[int, int]], token_spans: list[tuple[int, int]]) -> list[int]:
    """The unit of each subword: consecutive subwords share one while they overlap a common
    given token, so a unit is the fewest subwords and tokens that cover each other.

    Spans are ``(start, end)`` characters in the same text, in order. A subword that overlaps
    no token (a lone "▁" before punctuation) joins the next subword's unit, or the last one.
    Units are numbered 0, 1, ... without gaps.
    """
    touched, first = [], 0  # both in order: the tokens a subword overlaps start at ``first``
    for a, b in piece_spans:
        while first < len(token_spans) and token_spans[first][1] <= a:
            first += 1
        hit, t = set(), first
        while t < len(token_spans) and token_spans[t][0] < b:
            if a < token_spans[t][1]:
                hit.add(t)
            t += 1
        touched.append(hit)
    units: list[int | None] = []
    unit, last = -1, set()
    for tokens in touched:
        if tokens and not tokens & last:
            unit += 1
        units.append(unit if tokens else None)
        last = tokens or last
    following = max(unit, 0)
    for k in range(len(units) - 1, -1, -1):  # spaces take the unit after them
        units[k] = following = units[k] if units[k] is not None else following
    return units


def tokens_of_words(spans: list[tuple[int, int]], word_spans: list[tuple[int, int]]) -> list[int]:
    """For each token span, the index of the model word whose characters overlap it.

    ``word_spans``: each model word's ``(start, end)`` characters, in order (a word's span may
    include the space before it). A token nothing overlaps (only possible for an empty token)
    gets the nearest word before it.
    """
    words, w = [], 0
    for start, end in spans:
        while w + 1 < len(word_spans) and word_spans[w][1] <= start:
            w += 1
        words.append(w)
    return words
