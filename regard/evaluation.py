"""Scoring a model on a test set: BLEU, chrF, and BLEU by source sentence length.

Every score is sacreBLEU's, computed on detokenised text after the
normalisation shared with training (:func:`regard.data.text.normalize`):

* ``bleu``: cased BLEU (sacreBLEU's default 13a tokenisation), the number to
  report, with its signature;
* ``chrf``: chrF2, with its signature;
* ``bleu_lc``: sacreBLEU with ``lowercase=True, tokenize='13a'``, for a rough
  comparison with published Multi30k results, which are lower-cased BLEU on
  Moses-tokenised text (multi-bleu.perl): close, not identical;
* ``buckets``: cased BLEU of the sentences whose source has 1–7, 8–11, 12–15,
  16–19 and 20+ words (Multi30k captions are short), the analogue of
  Bahdanau et al. (2015), Figure 2, drawn by :func:`plot_bleu_by_length`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from sacrebleu.metrics import BLEU, CHRF

from regard.data.text import iter_parallel
from regard.errors import RegardError

BUCKETS = (1, 8, 12, 16, 20)  # lower edges (source words): 1–7, 8–11, 12–15, 16–19, 20+
LC_NOTE = ("sacreBLEU lowercase=True tokenize=13a on detokenised text; approximates the lower-cased "
           "tokenised BLEU of published Multi30k results (multi-bleu.perl on Moses tokens), not identical")


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """``(1, 8, 12)`` → ``["1-7", "8-11", "12+"]``."""
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]


def parse_buckets(text: str) -> tuple[int, ...]:
    """``"8,12,16,20"`` (upper bucket edges) → ``(1, 8, 12, 16, 20)``."""
    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RegardError(f"--buckets must be comma-separated whole numbers, got {text!r}") from None
    if not edges or edges != sorted(set(edges)) or edges[0] <= 1:
        raise RegardError(f"--buckets must be increasing numbers above 1, e.g. 8,12,16,20; got {text!r}")
    return (1, *edges)


def read_test_set(src: str | Path, ref: str | Path) -> tuple[list[str], list[str]]:
    """Sources and references, normalised; errors name file and line (empty line, bad UTF-8, mismatch)."""
    pairs = list(iter_parallel(src, ref))
    if not pairs:
        raise RegardError(f"{src}: no sentences")
    return [s for s, _ in pairs], [r for _, r in pairs]


def score(hypotheses: list[str], references: list[str], sources: list[str],
          edges: Sequence[int] = BUCKETS) -> dict[str, Any]:
    """Corpus scores, signatures and per-length-bucket BLEU of ``hypotheses``."""
    if not len(hypotheses) == len(references) == len(sources) > 0:
        raise ValueError("hypotheses, references and sources must be non-empty and of equal length")
    bleu, bleu_lc, chrf = BLEU(), BLEU(lowercase=True, tokenize="13a"), CHRF()
    buckets = []
    lengths = [len(s.split()) for s in sources]
    for label, lo, hi in zip(bucket_labels(edges), edges, [*edges[1:], None]):
        idx = [i for i, n in enumerate(lengths) if lo <= n and (hi is None or n < hi)]
        value = BLEU().corpus_score([hypotheses[i] for i in idx], [[references[i] for i in idx]]).score if idx else None
        buckets.append({"words": label, "n": len(idx), "bleu": value})
    return {
        "n": len(hypotheses),
        "bleu": bleu.corpus_score(hypotheses, [references]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf": chrf.corpus_score(hypotheses, [references]).score,
        "chrf_signature": str(chrf.get_signature()),
        "bleu_lc": bleu_lc.corpus_score(hypotheses, [references]).score,
        "bleu_lc_signature": str(bleu_lc.get_signature()),
        "bleu_lc_note": LC_NOTE,
        "buckets": buckets,
    }


def model_name(path: str | Path | Sequence[str | Path]) -> str:
    """``runs/multi30k/best`` → ``multi30k``: the run's name, not its checkpoint's; an ensemble's
    members' names joined by ``+``."""
    if not isinstance(path, (str, Path)):
        return "+".join(model_name(member) for member in path)
    path = Path(path).resolve()
    return path.parent.name if path.name in ("best", "last", "model") else path.name


def evaluate_model(model: str | Path | Sequence[str | Path], sources: list[str], references: list[str],
                   beam: int | None = None,
                   edges: Sequence[int] = BUCKETS, name: str | None = None,
                   precision: str = "fp32", stopping: str | None = None, workers: int = 1,
                   device: str = "auto", threads: int = 1) -> dict[str, Any]:
    """Translate ``sources`` with the model in folder ``model`` (several: an ensemble) on ``device``
    and :func:`score` the result (with ``workers`` > 1, in that many processes of ``threads``
    threads: :mod:`regard.pool`)."""
    from regard.pool import open_translator
    with open_translator(model, precision, workers, device, threads) as translator:
        cfg, device = translator.cfg, str(translator.device)
        beam = beam or cfg.search.beam
        stopping = stopping or cfg.search.stopping
        tic = time.perf_counter()
        hypotheses = [t.text for t in translator.translate(sources, beam=beam, stopping=stopping)]
        seconds = time.perf_counter() - tic
    members = {} if isinstance(model, (str, Path)) else {"ensemble": [str(m) for m in model]}
    return {"name": name or model_name(model), "model": str(model) if not members else "+".join(members["ensemble"]),
            **members, "arch": cfg.model.arch, "attention": cfg.model.attention_kind, "beam": beam,
            "stopping": stopping, "precision": precision, "device": device, "workers": workers,
            "translate_seconds": round(seconds, 2),
            "sentences_per_second": round(len(sources) / seconds, 1), **score(hypotheses, references, sources, edges),
            "hypotheses": hypotheses}


def format_result(result: dict[str, Any]) -> str:
    """A few lines for people."""
    members = result.get("ensemble")
    kind = f"ensemble of {len(members)}, the first's " if members else ""
    lines = [f"{result['name']} ({kind}attention: {result['attention']}, beam {result['beam']}, "
             f"{result['n']} sentences, {result['precision']}: {result['sentences_per_second']} sentences/s)",
             f"  BLEU {result['bleu']:.2f}   [{result['bleu_signature']}]",
             f"  chrF {result['chrf']:.2f}   [{result['chrf_signature']}]",
             f"  BLEU lower-cased {result['bleu_lc']:.2f}   [{result['bleu_lc_signature']}]",
             "  BLEU by source length: " + "  ".join(
                 f"{b['words']}: {'-' if b['bleu'] is None else format(b['bleu'], '.1f')} (n={b['n']})"
                 for b in result["buckets"])]
    return "\n".join(lines)


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The model results of one or more ``regard evaluate --json-out`` files."""
    results = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
            found = report["results"]
            if not all({"name", "bleu", "buckets"} <= set(r) for r in found):
                raise KeyError("a result lacks 'name', 'bleu' or 'buckets'")
        except FileNotFoundError:
            raise RegardError(f"file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise RegardError(f"{path}: not a 'regard evaluate --json-out' file ({type(err).__name__}: {err})") from None
        results.extend(found)
    return results


def plot_bleu_by_length(results: list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """One line per model: BLEU against source sentence length (Bahdanau et al. 2015, Fig. 2)."""
    from regard.plotting import plot_by_length  # matplotlib only when drawing

    if not results:
        raise RegardError("no results to plot")
    labels = [b["words"] for b in results[0]["buckets"]]
    if any([b["words"] for b in r["buckets"]] != labels for r in results):
        raise RegardError("cannot draw results with different length buckets on one chart")
    counts = [b["n"] for b in results[0]["buckets"]]
    same_counts = all([b["n"] for b in r["buckets"]] == counts for r in results)
    series = {f"{r['name']} (attention: {r.get('attention', '?')}, BLEU {r['bleu']:.1f})":
              [b["bleu"] for b in r["buckets"]] for r in results}
    return plot_by_length(labels, counts if same_counts else None, series, "BLEU (cased, sacreBLEU)", path, title)
