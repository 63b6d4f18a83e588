"""``make bench``: Regard against Joey NMT and OpenNMT-py on the same model, side by side.

    python -m bench.peers [--arch rnn|transformer] [--steps N] [--warmup W] [--rounds R] [--limit L]
                          [--quality] [--data DIR] [--systems regard,joeynmt,opennmt-py,regard-bf16]
                          [--skip-install] [--batches matched|literal] [--out runs/bench]

``--arch transformer`` (``make bench BENCH_ARGS="--arch transformer"``) runs Regard's
Transformer beside OpenNMT-py's with the same sizes (bench/configs.py), the same way; Joey NMT
is left out, and the results go to ``runs/bench-transformer`` by default.

1. installs the peers into their own venvs in the cache (once; see bench/install.py);
2. prepares Multi30k en–fr once for all three (bench/data.py);
3. times a 1024 x 1024 matmul (fp32, bf16): the machine's ceiling;
4. trains each system for ``--steps`` steps, ``--rounds`` times, alternating the order
   (A B C D, then D C B A) so that drift on the machine hits every system alike, and
   measures target tokens/s after ``--warmup`` steps and peak RSS;
5. translates test_2016_flickr (or its first ``--limit`` sentences) greedily, then with
   beam 5 (in reverse order), with the models of the first round;
6. prints one table with the Regard/peer ratios and writes ``OUT/peers.json``;
7. with ``--quality``: trains Regard, Joey NMT and OpenNMT-py for ``--quality-minutes``
   (20) of wall time each, then scores beam-5 translations of the test set (BLEU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from bench import measure
from bench.batches import peer_budgets
from bench.configs import ARCHS, BATCH_TOKENS, LOG_EVERY, NOTES_OF, SETTINGS_OF, batch_note
from bench.data import Prepared, prepare
from bench.flops import CEILING_GFLOPS, regard_flops, utilisation
from bench.install import PEERS, default_cache, ensure_peer, installed_versions, venv_python
from bench.systems import REGARD_ENV, REPO, SYSTEMS, Context, RunFailed, Trained, Translated

ALL = ["regard", "joeynmt", "opennmt-py", "regard-bf16"]
SYSTEMS_OF = {"rnn": ALL, "transformer": ["regard", "opennmt-py", "regard-bf16"]}  # by --arch
PEER_NAMES = ["joeynmt", "opennmt-py"]
SPEED = ("train_tok_s", "greedy_sent_s", "beam5_sent_s")
START = time.time()


def say(message: str) -> None:
    minutes, seconds = divmod(int(time.time() - START), 60)
    print(f"[{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description="Regard against Joey NMT and "
                                "OpenNMT-py on the same model, side by side (make bench). See docs/PERFORMANCE.md.")
    p.add_argument("--arch", choices=ARCHS, default="rnn",
                   help="the shared model: rnn (all three toolkits) or transformer (Regard and OpenNMT-py)")
    p.add_argument("--steps", type=int, default=50, help="training steps per run (default 50)")
    p.add_argument("--warmup", type=int, default=20, help="steps left out of the timing (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="training runs per system, alternating order (default 2)")
    p.add_argument("--limit", type=int, help="translate only the first N test sentences (smoke runs)")
    p.add_argument("--systems", help=f"comma-separated subset of {','.join(ALL)} (default: every system of --arch)")
    p.add_argument("--data", default=os.environ.get("REGARD_DATA") or str(REPO.parent / "shared" / "data"),
                   help="folder holding multi30k/ (default: $REGARD_DATA or ../shared/data)")
    p.add_argument("--cache", type=Path, help="cache folder (default: $REGARD_CACHE/bench or ~/.cache/regard/bench)")
    p.add_argument("--out", type=Path, help="output folder (default runs/bench, runs/bench-transformer for the "
                                            "Transformer)")
    p.add_argument("--batches", choices=["matched", "literal"], default="matched",
                   help="peers' batch sizes: matched to Regard's real target tokens per batch, or 2000 (literal)")
    p.add_argument("--skip-install", action="store_true", help="use the peers' venvs as they are")
    p.add_argument("--quality", action="store_true", help="also train each toolkit for --quality-minutes, score BLEU")
    p.add_argument("--quality-minutes", type=float, default=20.0, help="wall-clock training time per toolkit (20)")
    args = p.parse_args(argv)
    args.out = args.out or REPO / "runs" / ("bench" if args.arch == "rnn" else f"bench-{args.arch}")
    args.out = args.out.resolve()  # the peers run in their own folders: a relative path would break
    choices = SYSTEMS_OF[args.arch]
    args.systems = [s.strip() for s in (args.systems or ",".join(choices)).split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in choices]
    if unknown or not args.systems:
        p.error(f"--systems: unknown {unknown} for --arch {args.arch}; choose from {choices}")
    if args.warmup % LOG_EVERY or args.steps % LOG_EVERY or args.steps - args.warmup < 2 * LOG_EVERY:
        p.error(f"--steps and --warmup must be multiples of {LOG_EVERY}, with at least {2 * LOG_EVERY} timed steps")
    if (args.limit is not None and args.limit < 1) or args.rounds < 1 or args.quality_minutes <= 0:
        p.error("--limit and --rounds must be at least 1, --quality-minutes above 0")
    return args


def install(names: list[str], cache: Path, skip: bool) -> None:
    for name in (n for n in names if n in PEERS):
        if skip:
            if not venv_python(cache, name).exists():
                raise SystemExit(f"bench: --skip-install, but {venv_python(cache, name)} does not exist")
        else:
            ensure_peer(PEERS[name], cache, log=say)


def measure_ceiling(work: Path) -> dict:
    out = work / "ceiling.json"
    run = measure.run([sys.executable, "-m", "bench.flops", "ceiling"], work / "ceiling.log", REGARD_ENV,
                      stdout=out, cwd=REPO)
    if run.returncode:
        raise RunFailed(f"matmul ceiling failed:\n{run.tail()}")
    return json.loads(out.read_text())


def failed(results: dict, name: str, err: Exception) -> None:
    """Record a system's failure; the others go on, and the exit status says so."""
    results[name]["error"] = str(err)
    say(f"  {name} FAILED: {str(err).splitlines()[0]}")


def train_round(ctx: Context, names: list[str], args: argparse.Namespace, work: Path, round_no: int,
                results: dict, models: dict) -> None:
    """One training run of every system, in this round's order."""
    order = names if round_no % 2 == 0 else names[::-1]
    for name in (n for n in order if "error" not in results[n]):
        say(f"train {name} (round {round_no + 1}/{args.rounds}, {args.steps} steps)")
        try:
            trained: Trained = SYSTEMS[name].train(ctx, work / name / f"train{round_no + 1}", args.steps)
            rate = measure.train_rate(trained.points, args.warmup)
        except (RunFailed, ValueError) as err:
            failed(results, name, err)
            continue
        run = {**rate, "peak_rss_mib": trained.run.peak_rss_mib, "wall_s": trained.run.wall_s, **trained.extra}
        results[name]["train_runs"].append(run)
        models.setdefault(name, trained.model)
        say(f"  {rate['train_tok_s']:.0f} target tok/s, {rate['tgt_tokens_per_step']:.0f} tok/step, "
            f"peak RSS {trained.run.peak_rss_mib:.0f} MiB")


def translate_all(ctx: Context, names: list[str], models: dict, work: Path, results: dict) -> None:
    """Greedy in the given order, then beam 5 in reverse order."""
    for beam, order in ((1, names), (5, names[::-1])):
        for name in (n for n in order if n in models and "error" not in results[n]):
            say(f"translate {name} (beam {beam}{f', first {ctx.limit}' if ctx.limit else ''})")
            try:
                done: Translated = SYSTEMS[name].translate(ctx, models[name], beam, work / name / "translate")
            except (RunFailed, ValueError) as err:
                failed(results, name, err)
                continue
            results[name]["greedy" if beam == 1 else "beam5"] = {
                "sent_s": done.sentences / done.seconds, "out_tok_s": done.out_tokens / done.seconds,
                "seconds": done.seconds, "sentences": done.sentences,
                "mean_out_tokens": done.out_tokens / done.sentences, "peak_rss_mib": done.run.peak_rss_mib,
                "wall_s_with_load": done.run.wall_s, **done.extra}
            say(f"  {done.sentences / done.seconds:.1f} sentences/s, peak RSS {done.run.peak_rss_mib:.0f} MiB")


def summarise(name: str, raw: dict, budgets: dict, cache: Path, arch: str = "rnn") -> dict:
    """The per-system entry of peers.json: headline numbers first, then details and settings."""
    runs = raw["train_runs"]
    out: dict = {}
    if runs:
        out["train_tok_s"] = sum(r["train_tok_s"] for r in runs) / len(runs)
        out["tgt_tokens_per_step"] = sum(r["tgt_tokens_per_step"] for r in runs) / len(runs)
    for key in ("greedy", "beam5"):
        if key in raw:
            out[f"{key}_sent_s"] = raw[key]["sent_s"]
    peaks = [r["peak_rss_mib"] for r in runs] + [raw[k]["peak_rss_mib"] for k in ("greedy", "beam5") if k in raw]
    out["peak_rss_mib"] = max(peaks) if peaks else None
    out["peak_rss_mib_train"] = max((r["peak_rss_mib"] for r in runs), default=None)
    out.update({"train_runs": runs, "greedy": raw.get("greedy"), "beam5": raw.get("beam5")})
    if "error" in raw:
        out["error"] = raw["error"]
    budget = budgets["regard" if name.startswith("regard") else name]
    notes = [batch_note(name, budget["batch_size"], budget["expected_tgt_tokens_per_step"]), *NOTES_OF[arch][name]]
    out["settings"] = {**SETTINGS_OF[arch], "batch_size": budget["batch_size"],
                       "expected_tgt_tokens_per_step": budget["expected_tgt_tokens_per_step"], "notes": notes}
    if name in PEERS:
        out["settings"]["versions"] = installed_versions(cache, name)
    return out


def ratios(systems: dict) -> dict:
    """Regard (and Regard bf16) over each peer, per metric (speed: higher is better; memory: lower)."""
    out = {}
    for mine in (n for n in ("regard", "regard-bf16") if n in systems):
        for peer in (p for p in PEER_NAMES if p in systems):
            pair = {}
            for metric in (*SPEED, "peak_rss_mib"):
                a, b = systems[mine].get(metric), systems[peer].get(metric)
                pair[metric] = a / b if a and b else None
            out[f"{mine}/{peer}"] = pair
    return out


def format_table(systems: dict, pairs: dict) -> str:
    head = f"{'system':<13}{'train tok/s':>12}{'tok/step':>10}{'greedy sent/s':>15}{'beam5 sent/s':>14}" \
           f"{'peak RSS MiB':>14}{'out len g/b5':>14}"
    lines = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "-"  # noqa: E731
    for name, s in systems.items():
        length = "/".join(fmt((s.get(k) or {}).get("mean_out_tokens"), ".1f") for k in ("greedy", "beam5"))
        lines.append(f"{name:<13}{fmt(s.get('train_tok_s'), '12.0f')}{fmt(s.get('tgt_tokens_per_step'), '10.0f')}"
                     f"{fmt(s.get('greedy_sent_s'), '15.1f')}{fmt(s.get('beam5_sent_s'), '14.1f')}"
                     f"{fmt(s.get('peak_rss_mib'), '14.0f')}{length:>14}")
    if pairs:
        titles = "".join(f"{title:>8} " for title in ("train", "greedy", "beam5", "memory"))
        lines += ["", f"{'ratio (memory: lower is better)':<32}{titles}".rstrip()]
        for pair, values in pairs.items():
            cells = "".join(fmt(values[m], "8.2f") + "x" for m in (*SPEED, "peak_rss_mib"))
            lines.append(f"{pair:<32}{cells}")
    return "\n".join(lines)


def format_flops(flops: dict, ceiling: dict, systems: dict) -> str:
    lines = [f"Regard's model: {flops['forward_mflop_per_token']:.1f} MFLOP forward, "
             f"{flops['train_mflop_per_token']:.1f} MFLOP training per target token "
             f"({flops['train_mflop_per_token_executed']:.1f} executed with padding; matrix products only)",
             f"matmul ceiling measured here (1024^2, 2 threads): fp32 {ceiling['float32_gflop_s']:.0f} GFLOP/s, "
             f"bf16 {ceiling['bfloat16_gflop_s']:.0f} GFLOP/s; quoted fp32 ceiling {CEILING_GFLOPS:.0f}"]
    for name in ("regard", "regard-bf16"):
        use = systems.get(name, {}).get("utilisation")
        if use:
            measured = use["fraction_of_measured"]
            lines.append(f"{name}: {use['achieved_gflop_s']:.1f} GFLOP/s in training = "
                         f"{100 * use['fraction_of_150']:.1f}% of {CEILING_GFLOPS:.0f} "
                         f"({100 * measured:.1f}% of the measured {'bf16' if name.endswith('bf16') else 'fp32'})")
    return "\n".join(lines)


def quality(ctx: Context, names: list[str], minutes: float, work: Path) -> dict:
    """Train each toolkit for ``minutes`` of wall time (SIGINT, like Ctrl-C), then beam-5 BLEU on the test set.
    Regard trains once, as regard-bf16 when that is among ``names``."""
    from regard.evaluation import read_test_set, score
    sources, references = read_test_set(ctx.prep.original("test", "en"), ctx.prep.original("test", "fr"))
    sources, references = sources[:ctx.limit], references[:ctx.limit]
    out = {}
    mine = "regard-bf16" if "regard-bf16" in names else "regard"  # Regard's fastest setting that is measured
    for name in (n for n in (mine, "joeynmt", "opennmt-py") if n in names):
        say(f"quality: train {name} for {minutes:g} minutes")
        try:
            trained = SYSTEMS[name].train(ctx, work / name / "train", 10**7, deadline_s=minutes * 60)
            say(f"quality: translate with {name} (greedy, then beam 5)")
            greedy = SYSTEMS[name].translate(ctx, trained.model, 1, work / name / "translate")
            done = SYSTEMS[name].translate(ctx, trained.model, 5, work / name / "translate")
        except RunFailed as err:
            out[name] = {"error": str(err)}
            say(f"  {name} FAILED: {str(err).splitlines()[0]}")
            continue
        scores = score(done.texts, references, sources)
        out[name] = {"bleu_lc": scores["bleu_lc"], "bleu": scores["bleu"], "chrf": scores["chrf"],
                     "bleu_signature": scores["bleu_signature"], "bleu_lc_signature": scores["bleu_lc_signature"],
                     "train_wall_s": trained.run.wall_s, "peak_rss_mib_train": trained.run.peak_rss_mib,
                     "beam5_sent_s": done.sentences / done.seconds, "sentences": done.sentences,
                     "mean_out_tokens": done.out_tokens / done.sentences,
                     "greedy_sent_s": greedy.sentences / greedy.seconds,
                     "greedy_mean_out_tokens": greedy.out_tokens / greedy.sentences, **trained.extra}
        say(f"  BLEU (lower-cased, 13a) {scores['bleu_lc']:.2f}, cased detok {scores['bleu']:.2f}, "
            f"{trained.extra.get('steps')} steps")
        if name.startswith("regard"):
            out[name]["int8"] = int8_quality(ctx, SYSTEMS[name], trained.model, work / name / "translate",
                                             references, sources)
    return out


def int8_quality(ctx: Context, system, model: Path, work: Path, references: list[str], sources: list[str]) -> dict:
    """Regard's option of int8 (dynamically quantised) translation: speeds and BLEU on the same model."""
    from regard.evaluation import score
    say("quality: translate with regard, int8 weights (greedy, beam 5, beam 5 with OpenNMT-py's stopping rule)")
    try:
        greedy = system.translate(ctx, model, 1, work, precision="int8")
        done = system.translate(ctx, model, 5, work, precision="int8")
        first = system.translate(ctx, model, 5, work, precision="int8", stopping="first")
    except RunFailed as err:
        return {"error": str(err)}
    scores, first_scores = score(done.texts, references, sources), score(first.texts, references, sources)
    return {"bleu_lc": scores["bleu_lc"], "bleu": scores["bleu"], "chrf": scores["chrf"],
            "greedy_sent_s": greedy.sentences / greedy.seconds, "beam5_sent_s": done.sentences / done.seconds,
            "stopping_first": {"bleu_lc": first_scores["bleu_lc"], "bleu": first_scores["bleu"],
                               "chrf": first_scores["chrf"], "beam5_sent_s": first.sentences / first.seconds}}


def format_quality(results: dict, minutes: float, limit: int | None) -> str:
    test = f"the first {limit} sentences of test_2016_flickr" if limit else "test_2016_flickr"
    lines = [f"after {minutes:g} minutes of training (beam 5, {test}):",
             f"{'system':<13}{'BLEU lc-tok':>12}{'BLEU cased':>12}{'chrF':>8}{'steps':>8}{'greedy sent/s':>15}"
             f"{'beam5 sent/s':>14}"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:<13}  failed: {r['error'].splitlines()[0]}")
            continue
        lines.append(f"{name:<13}{r['bleu_lc']:12.2f}{r['bleu']:12.2f}{r['chrf']:8.2f}{r['steps']:8d}"
                     f"{r['greedy_sent_s']:15.1f}{r['beam5_sent_s']:14.1f}")
        if "bleu_lc" in r.get("int8", {}):
            q = r["int8"]
            lines.append(f"{'  int8':<13}{q['bleu_lc']:12.2f}{q['bleu']:12.2f}{q['chrf']:8.2f}{'':8}"
                         f"{q['greedy_sent_s']:15.1f}{q['beam5_sent_s']:14.1f}")
            f = q["stopping_first"]
            lines.append(f"{'  int8 first':<13}{f['bleu_lc']:12.2f}{f['bleu']:12.2f}{f['chrf']:8.2f}{'':8}"
                         f"{'':15}{f['beam5_sent_s']:14.1f}   (beam stops when its best hypothesis ends)")
    return "\n".join(lines)


def speed(args: argparse.Namespace, ctx: Context, budgets: dict, work: Path) -> dict:
    """The ceiling, the alternating training rounds and the translations: the body of peers.json."""
    load_start = os.getloadavg()
    say("matmul ceiling")
    ceiling = measure_ceiling(work)
    raw = {name: {"train_runs": []} for name in args.systems}
    models: dict[str, Path] = {}
    for round_no in range(args.rounds):
        train_round(ctx, args.systems, args, work, round_no, raw, models)
    translate_all(ctx, args.systems, models, work, raw)
    systems = {name: summarise(name, raw[name], budgets, ctx.cache, args.arch) for name in args.systems}
    flops = regard_flops(ctx.prep, BATCH_TOKENS, args.arch)
    for name in ("regard", "regard-bf16"):
        if name in systems and systems[name].get("train_tok_s"):
            measured = ceiling["bfloat16_gflop_s" if name.endswith("bf16") else "float32_gflop_s"]
            systems[name]["utilisation"] = utilisation(flops, systems[name]["train_tok_s"], measured)
    return {
        "systems": systems, "ratios": ratios(systems), "flops": flops, "ceiling": ceiling,
        "settings": {**SETTINGS_OF[args.arch], "arch": args.arch, "steps": args.steps, "warmup": args.warmup,
                     "rounds": args.rounds,
                     "limit": args.limit, "batches": args.batches, "budgets": budgets, "data": ctx.prep.stats,
                     "subwords": "Regard trains SentencePiece itself from the cleaned text; the peers read the "
                                 "same pieces pre-tokenised (identical models, checked: same_subwords)",
                     "train_tok_s": "real target tokens (with </s>) per wall-clock second after the warm-up",
                     "sent_s": "sentences / translation time without model loading (each toolkit's own timer; "
                               "Regard: around Translator.translate)"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg()},
    }


def print_report(result: dict) -> None:
    systems, machine = result["systems"], result["machine"]
    print(format_table(systems, result["ratios"]))
    print()
    print(format_flops(result["flops"], result["ceiling"], systems))
    print(f"machine: {machine['cpus']} CPUs, 1-minute load average {machine['loadavg_start'][0]:.1f} at the start, "
          f"{machine['loadavg_end'][0]:.1f} at the end")
    for name, system in systems.items():
        print(f"\n{name}: " + "; ".join(system["settings"]["notes"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache = (args.cache or default_cache()).expanduser()
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    install(args.systems, cache, args.skip_install)
    prep: Prepared = prepare(Path(args.data), cache, log=say)
    budgets = peer_budgets(prep.pieces("train", "en"), prep.pieces("train", "fr"), BATCH_TOKENS, args.batches)
    ctx = Context(prep, cache, {n: b["batch_size"] for n, b in budgets.items()}, args.limit, arch=args.arch)
    try:
        result = speed(args, ctx, budgets, work)
    except RunFailed as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    print_report(result)
    write_result(result, args.out)
    if args.quality:
        shutil.rmtree(args.out / "quality", ignore_errors=True)
        result["quality"] = {"minutes": args.quality_minutes, "limit": args.limit,
                             "systems": quality(ctx, args.systems, args.quality_minutes, args.out / "quality")}
        print("\n" + format_quality(result["quality"]["systems"], args.quality_minutes, args.limit))
        write_result(result, args.out)
    errors = [n for n, s in result["systems"].items() if "error" in s]
    errors += [n for n, r in result.get("quality", {}).get("systems", {}).items() if "error" in r]
    for name in errors:
        print(f"bench: {name} failed (details in {args.out / 'peers.json'})", file=sys.stderr)
    return 1 if errors else 0


def write_result(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2))
    say(f"wrote {out / 'peers.json'}")


if __name__ == "__main__":
    sys.exit(main())
