"""``regard demo``: the seed's example, trained from nothing, offline.

1. Generate English→French pairs from the built-in grammar (``data/grammar.py``),
   holding out a test set that contains "the black cat ate the mouse".
2. Train an attention model, and the traditional ``attention: none`` model on
   the same data with the same budget.
3. Translate the demo sentence, draw its attention, and print both models'
   held-out exact-match accuracy by sentence length.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

from regard.config import Config, ModelConfig, SearchConfig, TokenizerConfig, TrainConfig
from regard.data.grammar import DEMO_SENTENCE, Pair, demo_splits
from regard.errors import RegardError
from regard.plotting import plot_attention, plot_by_length
from regard.files import replace_folder, write_json
from regard.training.trainer import train
from regard.translator import Translator

BUCKETS = [(1, 5), (6, 8), (9, 11), (12, 14), (15, 99)]


DEMO_SEED = 2  # the generated data and training; the README's figures come from it


def demo_config(out: Path, attention: str = "general", steps: int = 1200, seed: int = DEMO_SEED,
                max_minutes: float = 3.0) -> Config:
    """A small model that learns the grammar in about two minutes on 2 CPU cores."""
    return Config(
        tokenizer=TokenizerConfig(src_vocab_size=200, tgt_vocab_size=200),
        model=ModelConfig(embedding_size=64, encoder_hidden=128, decoder_hidden=256, attention=attention,
                          dropout=0.1),
        search=SearchConfig(beam=5, length_penalty=1.0),
        train=TrainConfig(out_dir=str(out), seed=seed, batch_tokens=1500, max_steps=steps,
                          max_minutes=max_minutes, lr=3e-3, schedule="constant", label_smoothing=0.0,
                          eval_every=max(1, steps // 3), clip_norm=1.0),
    )


def bucket_of(sentence: str) -> str:
    n = len(sentence.split())
    lo, hi = next(b for b in BUCKETS if b[0] <= n <= b[1])
    return f"{lo}-{hi}" if hi < 99 else f"{lo}+"


def accuracy_by_length(translator: Translator, test: list[Pair]) -> dict[str, dict[str, float]]:
    """Exact-match accuracy (beam 5) per source-length bucket, plus 'all'."""
    outputs = translator.translate([p.en for p in test], beam=5)
    hits: dict[str, list[int]] = defaultdict(list)
    for pair, out in zip(test, outputs):
        ok = int(out.text == pair.fr)
        hits[bucket_of(pair.en)].append(ok)
        hits["all"].append(ok)
    return {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in hits.items()}


def prepare_out_dir(out: Path) -> None:
    """Refuse to clobber a folder that is not an earlier demo's."""
    if out.exists() and any(out.iterdir()) and not (out / "demo.json").exists():
        raise RegardError(f"{out} exists and is not a previous demo's output: choose another --out")
    for name in ("attention", "baseline"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def run_demo(out: str | Path, steps: int = 1200, baseline_steps: int = 1200, seed: int = DEMO_SEED,
             show_progress: bool = True, max_minutes: float = 3.0) -> dict:
    """Train both models, write ``model/``, ``attention.png``, ``demo.json``, ``accuracy.png``;
    return the summary.

    Each model trains for its number of steps or ``max_minutes``, whichever comes first (0: no limit).
    """
    out = Path(out)
    prepare_out_dir(out)
    train_pairs, heldout = demo_splits(seed=seed)
    test, valid = heldout[:500], heldout[500:]
    as_tuples = lambda pairs: [(p.en, p.fr) for p in pairs]  # noqa: E731
    data = (as_tuples(train_pairs), as_tuples(valid))
    results = {}
    for name, attention, budget in (("attention", "general", steps), ("baseline", "none", baseline_steps)):
        print(f"\n== training the {name} model (attention: {attention}, {budget} steps) ==", flush=True)
        cfg = demo_config(out / name, attention, budget, seed, max_minutes)
        train(cfg, data=data, show_progress=show_progress)
        results[name] = accuracy_by_length(Translator.load(out / name), test)
    replace_folder(out / "model", lambda tmp: _copy_files(out / "attention" / "best", tmp))
    translator = Translator.load(out / "model")
    best = translator.translate([DEMO_SENTENCE], beam=5)[0]
    plot_attention(best.word_attention, best.source_words, best.target_words, out / "attention.png",
                   title=f"{best.source}  →  {best.text}")
    summary = {"source": best.source, "translation": best.text, "source_words": best.source_words,
               "target_words": best.target_words, "attention": best.word_attention}
    write_json(out / "demo.json", summary)
    write_json(out / "accuracy.json", results)
    plot_accuracy(results, out / "accuracy.png")
    print_report(best, results, out)
    return {**summary, "accuracy": results}


def plot_accuracy(results: dict, path: Path) -> Path:
    """Both models' held-out exact-match accuracy against sentence length, on one chart."""
    labels = [b for b in (bucket_of("x " * lo) for lo, _ in BUCKETS) if b in results["attention"]]
    series = {f"{name} (attention: {kind})": [100 * results[name][b]["accuracy"] for b in labels]
              for name, kind in (("attention", "general"), ("baseline", "none"))}
    counts = [results["attention"][b]["n"] for b in labels]
    return plot_by_length(labels, counts, series, "exact-match accuracy (%)", path,
                          title="held-out demo sentences, beam 5", ymax=105)


def _copy_files(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        shutil.copy2(f, dst / f.name)


def print_report(best, results: dict, out: Path) -> None:
    print(f"\n{best.source}  →  {best.text}")
    for word, row in zip(best.target_words, best.word_attention):
        j = max(range(len(row)), key=row.__getitem__)
        print(f"  {word:>10} looks most at {best.source_words[j]!r} ({row[j]:.2f})")
    print("\nheld-out exact-match accuracy (beam 5) by English length:")
    print(f"  {'words':>7} {'n':>5} {'attention':>10} {'none':>8}")
    for key in [bucket_of("x " * lo) for lo, _ in BUCKETS] + ["all"]:
        if key in results["attention"]:
            a, b = results["attention"][key], results["baseline"][key]
            print(f"  {key:>7} {a['n']:>5} {a['accuracy']:>10.1%} {b['accuracy']:>8.1%}")
    print(f"\nwrote {out / 'model'}, {out / 'attention.png'}, {out / 'demo.json'}, {out / 'accuracy.png'}")
