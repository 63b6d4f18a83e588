"""Attention as alignment against a real aligner (docs/ALIGNMENT.md).

    python -m bench.alignment corpus     # runs/alignment-data/{train,valid}.{en,fr}: Multi30k + Tatoeba
    regard train --config recipes/alignment-en-fr.yaml   # and recipes/alignment-fr-en.yaml
    python -m bench.alignment eflomal    # eflomal (own venv) on the same text + the gold sentences
    python -m bench.alignment guide      # eflomal's links of the training pairs, for guided alignment
    python -m bench.alignment regard     # regard align with both models, every rule and symmetrisation
    python -m bench.alignment report     # the table of docs/ALIGNMENT.md from what the steps wrote
    python -m bench.alignment pictures   # docs/img/alignment-*.png: gold links over attention
    python -m bench.alignment study --minutes 110   # all of it in one go: the four models side by side

The corpus is the two shared corpora's training splits together (as ``regard data fetch``
derives them; fetch both first, e.g. ``--from ../shared/data``). eflomal learns from the same
pairs, tokenised the way the gold is (:func:`regard.alignment.detok.tokenize`), plus the 484
gold sentence pairs' text (never their links): a statistical aligner must see the sentences
it aligns. The gold is the Hansards NAACL 2003 set: dev (37 pairs) to choose the rule and
threshold, test (447) to report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.install import default_cache
from regard.data.corpora import corpus_dir

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "runs" / "alignment-data"
RESULTS = REPO / "runs" / "alignment"
GOLD = REPO.parent / "shared" / "data" / "alignment"
CORPORA = {"multi30k": ("train", "val"), "tatoeba": ("train", "valid")}
EFLOMAL = "eflomal==2.0.0"


def build_corpus(out: Path = DATA) -> None:
    """Concatenate the corpora's train and validation splits into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for side in ("en", "fr"):
        for split, index in (("train", 0), ("valid", 1)):
            with (out / f"{split}.{side}").open("w", encoding="utf-8") as handle:
                for name, splits in CORPORA.items():
                    handle.write((corpus_dir(name) / f"{splits[index]}.{side}").read_text(encoding="utf-8"))
    counts = {f.name: sum(1 for _ in f.open()) for f in sorted(out.iterdir())}
    print(json.dumps(counts))


def gold_sets() -> dict[str, tuple[list[list[str]], list[list[str]], list]]:
    """``{"dev": (English tokens, French tokens, gold), "test": ...}`` from ``../shared``."""
    from regard.alignment.gold import read_naacl, read_tokens
    sets = {}
    for name in ("dev", "test"):
        en, fr = read_tokens(GOLD / f"{name}.e"), read_tokens(GOLD / f"{name}.f")
        sets[name] = en, fr, read_naacl(GOLD / f"{name}.wa.nonullalign", [len(s) for s in en], [len(t) for t in fr])
    return sets


def eflomal_python(cache: Path) -> Path:
    """eflomal's own venv under the bench cache (created once)."""
    venv = cache / "venvs" / "eflomal"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "eflomal-align").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", EFLOMAL],
                       check=True)
    return python


def run_eflomal(out: Path = RESULTS / "eflomal") -> dict:
    """Align Regard's training text plus the gold sentences with eflomal; score both sets."""
    from regard.alignment.detok import tokenize
    from regard.alignment.links import parse_pharaoh
    from regard.data.text import iter_parallel
    sets = gold_sets()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / "corpus.en").open("w") as en, (out / "corpus.fr").open("w") as fr:
        for s, t in iter_parallel(DATA / "train.en", DATA / "train.fr"):
            en.write(" ".join(tokenize(s, "en")) + "\n")
            fr.write(" ".join(tokenize(t, "fr")) + "\n")
        for src, tgt, _ in sets.values():
            en.writelines(" ".join(s).lower() + "\n" for s in src)
            fr.writelines(" ".join(t).lower() + "\n" for t in tgt)
    tokenised = time.perf_counter() - start
    align = eflomal_python(default_cache()).parent / "eflomal-align"
    subprocess.run([str(align), "--overwrite", "-s", str(out / "corpus.en"), "-t", str(out / "corpus.fr"),
                    "-f", str(out / "forward.links"), "-r", str(out / "reverse.links")], check=True)
    seconds = time.perf_counter() - start - tokenised
    n_gold = sum(len(src) for src, _, _ in sets.values())
    directions = {}
    for name in ("forward", "reverse"):
        lines = (out / f"{name}.links").read_text().splitlines()[-n_gold:]
        directions[name] = [parse_pharaoh(line) for line in lines]
    first = len(sets["dev"][0])
    split = {"dev": slice(0, first), "test": slice(first, n_gold)}
    rows = score_directions({k: {d: v[split[k]] for d, v in directions.items()} for k in split}, sets)
    result = {"system": "eflomal", "version": EFLOMAL, "pairs": n_gold + sum(1 for _ in open(DATA / "train.en")),
              "tokenise_s": round(tokenised, 1), "align_s": round(seconds, 1), "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def score_directions(links: dict[str, dict[str, list[set]]], sets: dict) -> list[dict]:
    """AER, precision and recall of each direction and symmetrisation on each gold set.

    ``links[set]["forward"]`` are English→French links, ``["reverse"]`` French→English ones
    already in (English, French) orientation.
    """
    from regard.alignment.score import score
    from regard.alignment.symmetrize import SYMMETRIZATIONS, symmetrize
    rows = []
    for name, (_, _, gold) in sets.items():
        fwd, rev = links[name]["forward"], links[name]["reverse"]
        variants = {"en→fr": fwd, "fr→en": rev}
        variants.update({m: [symmetrize(f, r, m) for f, r in zip(fwd, rev)] for m in SYMMETRIZATIONS})
        for method, predicted in variants.items():
            rows.append({"set": name, "method": method, **score(predicted, gold).to_dict()})
    return rows


def write_guide(out: Path = DATA, method: str = "grow-diag-final-and") -> None:
    """eflomal's links for the training pairs, on the words the models see (their text split at
    spaces), symmetrised: ``train.en-fr.links`` and its transpose ``train.fr-en.links``, line-
    aligned with ``train.{en,fr}``, for ``data.train_links`` (recipes/alignment-*-guided.yaml)."""
    from regard.alignment.links import format_pharaoh, parse_pharaoh, transpose
    from regard.alignment.symmetrize import symmetrize
    from regard.data.text import iter_parallel
    work = RESULTS / "guide"
    work.mkdir(parents=True, exist_ok=True)
    with (work / "words.en").open("w") as en, (work / "words.fr").open("w") as fr:
        for s, t in iter_parallel(out / "train.en", out / "train.fr"):
            en.write(s + "\n")
            fr.write(t + "\n")
    align = eflomal_python(default_cache()).parent / "eflomal-align"
    subprocess.run([str(align), "--overwrite", "-s", str(work / "words.en"), "-t", str(work / "words.fr"),
                    "-f", str(work / "forward.links"), "-r", str(work / "reverse.links")], check=True)
    with (work / "forward.links").open() as f, (work / "reverse.links").open() as r, \
            (out / "train.en-fr.links").open("w") as ef, (out / "train.fr-en.links").open("w") as fe:
        for forward, reverse in zip(f, r):
            links = symmetrize(parse_pharaoh(forward), parse_pharaoh(reverse), method)
            ef.write(format_pharaoh(links) + "\n")
            fe.write(format_pharaoh(transpose(links)) + "\n")


RULE_GRID = [("argmax", 0.0)] + [(rule, t) for rule in ("threshold", "both") for t in (0.1, 0.2, 0.3, 0.4, 0.5)]


def run_regard(forward_model: Path, reverse_model: Path, name: str = "attention") -> dict:
    """Score attention links of both models, for every rule of :data:`RULE_GRID`; the rule
    of each row is the one with the lowest AER on dev, so test is scored once per row."""
    from regard.alignment.forced import attend_pairs, on_tokens
    from regard.alignment.links import transpose
    from regard.translator import Translator
    sets = gold_sets()
    attended = {}
    start = time.perf_counter()
    for direction, model, langs in (("forward", forward_model, ("en", "fr")), ("reverse", reverse_model, ("fr", "en"))):
        translator = Translator.load(model)
        for set_name, (en, fr, _) in sets.items():
            src, tgt = (en, fr) if direction == "forward" else (fr, en)
            attended[direction, set_name] = attend_pairs(translator, src, tgt, *langs, capitalize=True)
    seconds = time.perf_counter() - start
    by_rule = {}
    for rule, threshold in RULE_GRID:
        links = {set_name: {d: [on_tokens(*a, rule, threshold).links for a in attended[d, set_name]]
                            for d in ("forward", "reverse")} for set_name in sets}
        for set_name in sets:
            links[set_name]["reverse"] = [transpose(x) for x in links[set_name]["reverse"]]
        by_rule[rule, threshold] = score_directions(links, sets)
    rows = []
    for method in {r["method"]: None for r in next(iter(by_rule.values()))}:
        best = min(by_rule, key=lambda k: next(r["aer"] for r in by_rule[k] if r["set"] == "dev" and r["method"] == method))
        rows += [{**r, "rule": best[0], "threshold": best[1]} for r in by_rule[best] if r["method"] == method]
    unknown = {d: [sum(x[0].unknown for x in attended[d, "test"]), sum(len(x[0].tokens) for x in attended[d, "test"])]
               for d in ("forward", "reverse")}
    result = {"system": name, "models": [str(forward_model), str(reverse_model)], "attend_s": round(seconds, 1),
              "unknown_test_tokens": {"en": unknown["forward"], "fr": unknown["reverse"]}, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


MODELS = {"alignment-en-fr": ("en", "fr"), "alignment-fr-en": ("fr", "en"),
          "alignment-en-fr-guided": ("en", "fr"), "alignment-fr-en-guided": ("fr", "en")}


def train_side_by_side(minutes: float, names: tuple[str, ...] = tuple(MODELS)) -> None:
    """Train the models of ``recipes/NAME.yaml`` at the same time, one thread each, for at most
    ``minutes`` (``train.max_minutes``); logs in ``runs/alignment/train-NAME.log``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name in names:
        command = [sys.executable, "-m", "regard", "train", "--config", str(REPO / "recipes" / f"{name}.yaml"),
                   "--set", "train.threads=1", "--set", f"train.max_minutes={minutes:g}", "--log-every", "500"]
        log = (RESULTS / f"train-{name}.log").open("w")
        runs[name] = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log
    print(f"training {', '.join(names)} side by side for up to {minutes:g} minutes; logs in {RESULTS}/train-*.log",
          flush=True)
    failed = []
    for name, (process, log) in runs.items():
        if process.wait() != 0:
            failed.append(name)
        log.close()
    if failed:
        raise SystemExit(f"training failed: {', '.join(failed)} (see {RESULTS}/train-<name>.log)")


def score_bleu(names: tuple[str, ...] = tuple(MODELS)) -> None:
    """Each model's beam-5 BLEU on Multi30k test_2016_flickr in its own direction
    (``runs/alignment/bleu-NAME.json``): what guiding the attention costs in translation."""
    test = corpus_dir("multi30k")
    for name in names:
        src, tgt = MODELS[name]
        subprocess.run([sys.executable, "-m", "regard", "evaluate", "--model", str(REPO / "runs" / name),
                        "--src", str(test / f"test_2016_flickr.{src}"), "--ref", str(test / f"test_2016_flickr.{tgt}"),
                        "--beam", "5", "--workers", "2", "--json-out", str(RESULTS / f"bleu-{name}.json")],
                       check=True, cwd=REPO)


def disagreement(links: set, gold) -> int:
    """Links that count against AER in one sentence: sure gold links missed, plus predicted
    links outside the possible ones."""
    return len(gold.sure - links) + len(links - (gold.sure | gold.possible))


def draw_pictures(models: dict[str, Path], count: int = 3, max_tokens: int = 14,
                  out: Path = REPO / "docs" / "img") -> list[Path]:
    """Gold links over each en→fr model's attention for the ``count`` short test sentences
    (≤ ``max_tokens`` on each side) where the first model's argmax links and the gold differ
    most: ``out/alignment-NAME-K.png``, the same sentences for every model."""
    from regard.alignment.forced import attend_pairs, on_tokens
    from regard.alignment.plot import plot_links
    from regard.translator import Translator
    en, fr, gold = gold_sets()["test"]
    short = [k for k in range(len(en)) if len(en[k]) <= max_tokens and len(fr[k]) <= max_tokens]
    paths, chosen = [], None
    for name, model in models.items():
        attended = attend_pairs(Translator.load(model), [en[k] for k in short], [fr[k] for k in short],
                                "en", "fr", capitalize=True)
        found = {k: on_tokens(*a, "argmax", 0.0) for k, a in zip(short, attended)}
        if chosen is None:
            chosen = sorted(short, key=lambda k: (-disagreement(found[k].links, gold[k]), k))[:count]
        for n, k in enumerate(chosen, 1):
            a = found[k]
            title = f"{name}: Hansards test sentence {k + 1}, {disagreement(a.links, gold[k])} links disagree with gold"
            paths.append(plot_links(a.weights, a.source_tokens, a.target_tokens, out / f"alignment-{name}-{n}.png",
                                    gold=gold[k], links=a.links, title=title))
    return paths


def run_study(minutes: float) -> None:
    """Every step in order: corpus, eflomal, its guide links, the four models trained side by side,
    their attention links scored, their BLEU, and the report."""
    build_corpus()
    run_eflomal()
    write_guide()
    train_side_by_side(minutes)
    run_regard(REPO / "runs" / "alignment-en-fr", REPO / "runs" / "alignment-fr-en", "attention")
    run_regard(REPO / "runs" / "alignment-en-fr-guided", REPO / "runs" / "alignment-fr-en-guided", "guided")
    score_bleu()
    draw_pictures({"attention": REPO / "runs" / "alignment-en-fr", "guided": REPO / "runs" / "alignment-en-fr-guided"})
    print(report())


def report() -> str:
    """The markdown table of every result file in ``runs/alignment``."""
    lines = ["| system | method | rule | dev AER | test AER | test precision | test recall |",
             "|---|---|---|---:|---:|---:|---:|"]
    aligners = [p for p in sorted(RESULTS.glob("*.json")) if not p.name.startswith("bleu-")]
    for path in aligners + sorted(RESULTS.glob("*/results.json")):
        result = json.loads(path.read_text())
        rows = result["rows"]
        for row in (r for r in rows if r["set"] == "test"):
            dev = next(r for r in rows if r["set"] == "dev" and r["method"] == row["method"])
            rule = row.get("rule", "")
            rule = f"{rule} {row['threshold']}" if rule in ("threshold", "both") else rule
            lines.append(f"| {result['system']} | {row['method']} | {rule} | {100 * dev['aer']:.1f} | "
                         f"{100 * row['aer']:.1f} | {100 * row['precision']:.1f} | {100 * row['recall']:.1f} |")
    bleu = sorted(RESULTS.glob("bleu-*.json"))
    if bleu:
        lines += ["", "| model | Multi30k test_2016_flickr BLEU (beam 5) | chrF | BLEU lc |", "|---|---:|---:|---:|"]
        for path in bleu:
            r = json.loads(path.read_text())["results"][0]
            lines.append(f"| {path.stem[len('bleu-'):]} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['bleu_lc']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alignment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["corpus", "eflomal", "guide", "regard", "report", "pictures", "study"])
    parser.add_argument("--forward", type=Path, default=REPO / "runs" / "alignment-en-fr",
                        help="en→fr model (regard and pictures steps)")
    parser.add_argument("--reverse", type=Path, default=REPO / "runs" / "alignment-fr-en",
                        help="fr→en model (regard step)")
    parser.add_argument("--guided", type=Path, default=REPO / "runs" / "alignment-en-fr-guided",
                        help="guided en→fr model (pictures step)")
    parser.add_argument("--name", default="attention", help="label of the regard step's results")
    parser.add_argument("--minutes", type=float, default=110.0,
                        help="study step: training time of each model (train.max_minutes; default 110)")
    args = parser.parse_args(argv)
    if args.step == "corpus":
        build_corpus()
    elif args.step == "eflomal":
        run_eflomal()
        print(report())
    elif args.step == "guide":
        write_guide()
    elif args.step == "study":
        run_study(args.minutes)
    elif args.step == "pictures":
        for path in draw_pictures({"attention": args.forward, "guided": args.guided}):
            print(path)
    elif args.step == "regard":
        run_regard(args.forward, args.reverse, args.name)
        print(report())
    else:
        print(report())


if __name__ == "__main__":
    main()
