"""A tiny English→French grammar whose translations need attention.

``regard demo`` trains on pairs from this grammar. Each sentence is sampled as
a small tree (:class:`Sentence` → :class:`VP` → :class:`NP`) and rendered into
both languages by the same functions, so the French is always the exact
translation. The rules make a translator look back at the right source words:

* word order: colour adjectives follow the French noun ("the black cat" →
  "le chat noir"), size adjectives precede it ("the small cat" → "le petit chat");
* agreement in gender and number of articles, adjectives and verbs
  ("la souris noire", "les chats noirs", "les chats mangent");
* one word becoming two: English simple past → passé composé ("ate" →
  "a mangé", with a plural subject "ont mangé");
* length: relative clauses ("the cat that saw the dog ..." → "le chat qui a vu
  le chien ...") and final prepositional phrases ("... near the house" →
  "... près de la maison") give sentences of 3 to 20-odd words.

No French word needs elision (no l', d'); "de" + article contracts (de le → du,
de les → des). Any subject may do anything to any object: sentences are
grammatical, not sensible. All lower-case, no punctuation, single spaces.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Iterator

DEMO_SENTENCE = "the black cat ate the mouse"
DEMO_TRANSLATION = "le chat noir a mangé la souris"

# Shape probabilities: most sentences are short to medium, a few are long.
P_PLURAL = 0.3
P_INDEFINITE = 0.25  # singular noun phrases outside prepositional phrases
P_SIZE = 0.15  # a size adjective (French: before the noun)
P_COLOUR = 0.35  # a colour adjective (French: after the noun)
P_RELATIVE = 0.15  # per noun phrase, while nesting depth allows
P_PRESENT = 0.5
P_OBJECT = 0.6  # for verbs whose object is optional
P_PP = 0.3  # chance of each further prepositional phrase
MAX_PPS = 2


# ---------------------------------------------------------------- vocabulary

@dataclass(frozen=True)
class Noun:
    """A noun with both numbers in both languages and its French gender."""
    en: str
    en_pl: str
    fr: str
    fr_pl: str
    feminine: bool


@dataclass(frozen=True)
class Adjective:
    """An adjective with its four French forms and its French position."""
    en: str
    fr: tuple[str, str, str, str]  # masculine sg, feminine sg, masculine pl, feminine pl
    before_noun: bool = False  # position in French; English always puts it first

    def fr_form(self, feminine: bool, plural: bool) -> str:
        """The French form agreeing with a noun of this gender and number."""
        return self.fr[2 * plural + feminine]


@dataclass(frozen=True)
class Verb:
    """A verb in the forms each tense and subject number needs."""
    en: str  # present with a plural subject ("they eat")
    en_3sg: str  # present with a singular subject ("it eats")
    en_past: str
    fr_3sg: str
    fr_3pl: str
    fr_participle: str  # passé composé: "a" / "ont" + participle
    object_optional: bool = False


@dataclass(frozen=True)
class Preposition:
    """A preposition; a French one ending in "de" contracts with le/les."""
    en: str
    fr: str


M, F = False, True

NOUNS = {n.en: n for n in [
    Noun("cat", "cats", "chat", "chats", M),
    Noun("dog", "dogs", "chien", "chiens", M),
    Noun("mouse", "mice", "souris", "souris", F),
    Noun("cow", "cows", "vache", "vaches", F),
    Noun("horse", "horses", "cheval", "chevaux", M),
    Noun("girl", "girls", "fille", "filles", F),
    Noun("boy", "boys", "garçon", "garçons", M),
    Noun("woman", "women", "femme", "femmes", F),
    Noun("cheese", "cheeses", "fromage", "fromages", M),
    Noun("apple", "apples", "pomme", "pommes", F),
    Noun("ball", "balls", "balle", "balles", F),
    Noun("book", "books", "livre", "livres", M),
    Noun("flower", "flowers", "fleur", "fleurs", F),
    Noun("table", "tables", "table", "tables", F),
    Noun("house", "houses", "maison", "maisons", F),
    Noun("garden", "gardens", "jardin", "jardins", M),
]}

ADJECTIVES = {a.en: a for a in [
    Adjective("small", ("petit", "petite", "petits", "petites"), before_noun=True),
    Adjective("big", ("grand", "grande", "grands", "grandes"), before_noun=True),
    Adjective("black", ("noir", "noire", "noirs", "noires")),
    Adjective("white", ("blanc", "blanche", "blancs", "blanches")),
    Adjective("green", ("vert", "verte", "verts", "vertes")),
    Adjective("red", ("rouge", "rouge", "rouges", "rouges")),
    Adjective("grey", ("gris", "grise", "gris", "grises")),
    Adjective("blue", ("bleu", "bleue", "bleus", "bleues")),
]}

VERBS = {v.en: v for v in [
    Verb("eat", "eats", "ate", "mange", "mangent", "mangé", object_optional=True),
    Verb("see", "sees", "saw", "voit", "voient", "vu"),
    Verb("chase", "chases", "chased", "chasse", "chassent", "chassé"),
    Verb("find", "finds", "found", "trouve", "trouvent", "trouvé"),
    Verb("watch", "watches", "watched", "regarde", "regardent", "regardé",
         object_optional=True),
    Verb("like", "likes", "liked", "aime", "aiment", "aimé"),
]}

PREPOSITIONS = {p.en: p for p in [
    Preposition("in", "dans"),
    Preposition("on", "sur"),
    Preposition("under", "sous"),
    Preposition("behind", "derrière"),
    Preposition("near", "près de"),
    Preposition("with", "avec"),
]}

DE_CONTRACTIONS = {"le": "du", "les": "des"}  # "près de le jardin" → "près du jardin"

_SIZES = [a for a in ADJECTIVES.values() if a.before_noun]
_COLOURS = [a for a in ADJECTIVES.values() if not a.before_noun]


# ---------------------------------------------------------------- structures

@dataclass(frozen=True)
class NP:
    """A noun phrase: article, adjectives (English order), noun, relative clause."""
    noun: Noun
    plural: bool = False
    definite: bool = True
    adjectives: tuple[Adjective, ...] = ()
    relative: VP | None = None  # "that ..." / "qui ..."; the noun is its subject


@dataclass(frozen=True)
class VP:
    """A verb in the present or past, with an optional object."""
    verb: Verb
    present: bool = False
    obj: NP | None = None


@dataclass(frozen=True)
class Sentence:
    """Subject, verb phrase, and prepositional phrases at the end."""
    subject: NP
    vp: VP
    pps: tuple[tuple[Preposition, NP], ...] = ()


@dataclass(frozen=True)
class Pair:
    """An English sentence and its French translation."""
    en: str
    fr: str


# ---------------------------------------------------------------- rendering

def _join(*words: str) -> str:
    return " ".join(words)


def _articles(np: NP) -> tuple[str, str]:
    """English and French article; English "an" before a vowel ("an apple")."""
    if np.plural:
        if not np.definite:
            raise ValueError("indefinite noun phrases are singular")
        return "the", "les"
    if np.definite:
        return "the", "la" if np.noun.feminine else "le"
    first = np.adjectives[0].en if np.adjectives else np.noun.en
    return "an" if first[0] in "aeiou" else "a", "une" if np.noun.feminine else "un"


def render_np(np: NP) -> tuple[str, str]:
    """Render a noun phrase as (English, French), applying placement and agreement."""
    en_art, fr_art = _articles(np)
    noun, fem, pl = np.noun, np.noun.feminine, np.plural
    before = [a.fr_form(fem, pl) for a in np.adjectives if a.before_noun]
    after = [a.fr_form(fem, pl) for a in np.adjectives if not a.before_noun]
    en = _join(en_art, *(a.en for a in np.adjectives), noun.en_pl if pl else noun.en)
    fr = _join(fr_art, *before, noun.fr_pl if pl else noun.fr, *after)
    if np.relative is not None:
        rel_en, rel_fr = render_vp(np.relative, plural_subject=pl)
        en, fr = _join(en, "that", rel_en), _join(fr, "qui", rel_fr)
    return en, fr


def render_vp(vp: VP, plural_subject: bool) -> tuple[str, str]:
    """Render a verb phrase agreeing with its subject's number."""
    v = vp.verb
    if vp.present:
        en = v.en if plural_subject else v.en_3sg
        fr = v.fr_3pl if plural_subject else v.fr_3sg
    else:
        en = v.en_past
        fr = _join("ont" if plural_subject else "a", v.fr_participle)
    if vp.obj is not None:
        obj_en, obj_fr = render_np(vp.obj)
        en, fr = _join(en, obj_en), _join(fr, obj_fr)
    return en, fr


def render_pp(prep: Preposition, np: NP) -> tuple[str, str]:
    """Render a prepositional phrase, contracting "de le"/"de les"."""
    en, fr = render_np(np)
    article, rest = fr.split(" ", 1)
    if prep.fr.endswith(" de") and article in DE_CONTRACTIONS:
        return _join(prep.en, en), _join(prep.fr[:-3], DE_CONTRACTIONS[article], rest)
    return _join(prep.en, en), _join(prep.fr, fr)


def render_sentence(sentence: Sentence) -> Pair:
    """Render a whole sentence tree into an English/French pair."""
    parts = [render_np(sentence.subject),
             render_vp(sentence.vp, plural_subject=sentence.subject.plural)]
    parts += [render_pp(prep, np) for prep, np in sentence.pps]
    return Pair(_join(*(en for en, _ in parts)), _join(*(fr for _, fr in parts)))


# ---------------------------------------------------------------- sampling

def sample_np(rng: random.Random, depth: int, allow_indefinite: bool = True) -> NP:
    """A random noun phrase; ``depth`` relative clauses may still be nested."""
    noun = rng.choice(list(NOUNS.values()))
    plural = rng.random() < P_PLURAL
    definite = plural or not allow_indefinite or rng.random() >= P_INDEFINITE
    adjectives = []
    if rng.random() < P_SIZE:
        adjectives.append(rng.choice(_SIZES))
    if rng.random() < P_COLOUR:
        adjectives.append(rng.choice(_COLOURS))
    relative = sample_vp(rng, depth - 1) if depth > 0 and rng.random() < P_RELATIVE else None
    return NP(noun, plural, definite, tuple(adjectives), relative)


def sample_vp(rng: random.Random, depth: int) -> VP:
    """A random verb phrase whose object may nest ``depth`` relative clauses."""
    verb = rng.choice(list(VERBS.values()))
    present = rng.random() < P_PRESENT
    has_object = not verb.object_optional or rng.random() < P_OBJECT
    return VP(verb, present, sample_np(rng, depth) if has_object else None)


def sample_pair(rng: random.Random, max_depth: int = 1) -> Pair:
    """One random sentence pair; ``max_depth`` bounds relative-clause nesting."""
    subject = sample_np(rng, max_depth)
    vp = sample_vp(rng, max_depth)
    pps = []
    while len(pps) < MAX_PPS and rng.random() < P_PP:
        pps.append((rng.choice(list(PREPOSITIONS.values())),
                    sample_np(rng, depth=0, allow_indefinite=False)))
    return render_sentence(Sentence(subject, vp, tuple(pps)))


def _distinct_pairs(rng: random.Random, exclude: set[str]) -> Iterator[Pair]:
    seen = set(exclude)
    while True:
        pair = sample_pair(rng)
        if pair.en not in seen:
            seen.add(pair.en)
            yield pair


def generate(n: int, seed: int) -> list[Pair]:
    """``n`` pairs with distinct English sides, deterministic for a seed."""
    return list(itertools.islice(_distinct_pairs(random.Random(seed), set()), n))


def demo_splits(n_train: int = 20000, n_heldout: int = 1000,
                seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Train and held-out pairs sharing no English sentence.

    The held-out list starts with the demo pair, which is never in train.
    """
    if n_heldout < 1:
        raise ValueError("n_heldout must be at least 1 (it holds the demo sentence)")
    stream = _distinct_pairs(random.Random(seed), exclude={DEMO_SENTENCE})
    pairs = list(itertools.islice(stream, n_train + n_heldout - 1))
    return pairs[:n_train], [Pair(DEMO_SENTENCE, DEMO_TRANSLATION), *pairs[n_train:]]
