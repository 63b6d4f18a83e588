"""How the cost of training grows with the corpus: Regard at 0.2M, 2M and 20M pairs, Joey NMT beside it.

    python -m bench.scale [--sizes 0.2M,2M,20M] [--steps 200] [--warmup 20] [--skip-joey]
                          [--joey-sizes 0.2M,2M] [--skip-install] [--data DIR] [--cache DIR] [--out DIR]

1. builds one synthetic corpus per size in ``$REGARD_CACHE/bench/scale`` (default
   ``~/.cache/regard/bench/scale``; never in the repository): the real sentence pairs of
   Multi30k's training set and of Tatoeba (193,874 pairs), repeated and shuffled with a
   fixed seed (each repetition its own permutation) and cut at the size. Built once; about
   60 bytes a pair and side, so 2.4 GB at 20M pairs. The pairs repeat, so the benchmark's
   config turns ``data.dedupe`` off;
2. for each size, each phase in a subprocess of its own (``bench.measure.run``: its own peak
   RSS, from ``wait4``):

   * **prepare** (``python -m bench.scale_run prepare``): :func:`regard.data.binarise.prepare`
     from nothing: time, pairs read per second, peak RSS of the process and of its worker
     processes, and the size of the prepared folder;
   * **train** (``python -m bench.scale_run train``): ``--steps`` steps of the benchmark's model
     (``bench/configs.py``: embeddings 256, GRU 256×2 / 512, batches of 2,000 target tokens) in
     one process of two threads, from the prepared folder: the time from launching the process
     to the end of its first step, the peak RSS, and target tokens/s after ``--warmup`` steps;

3. Joey NMT 2.3.0 (from the venv ``make bench`` installs, run as ``bench.systems.Joey`` runs it)
   at the sizes up to 2M pairs: the very pairs Regard trains on, as space-separated pieces of
   Regard's subword models (written once per size, not measured), in its plain-text dataset,
   which reads every file whole into memory. Its start-up is estimated from its log: the time
   of its first progress line (step 10) less 9 steps at its measured pace;
4. prints a markdown table, the three targets of issue 16, and writes ``OUT/scale.json``.

Disk: at 20M pairs the corpus (2.4 GB), the prepared folder (about 1.5 GB) and, while
preparing, its spool of the cleaned text (2.4 GB). Run it on quiet cores: it measures time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench import measure
from bench.batches import peer_budgets
from bench.configs import BATCH_TOKENS, LOG_EVERY, THREADS, regard_config
from bench.data import prepare as prepare_multi30k
from bench.install import PEERS, default_cache, ensure_peer, venv_python
from bench.systems import REGARD_ENV, REPO, Context, Joey, RunFailed
from regard.config import Config, config_from_dict
from regard.data.text import iter_parallel, read_tsv
from regard.files import atomic_file, write_json

SEED = 16  # of the corpora's shuffles
START = time.time()


def say(message: str) -> None:
    minutes, seconds = divmod(int(time.time() - START), 60)
    print(f"[{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """``200000``, ``200k``, ``0.2M`` → 200000."""
    found = re.fullmatch(r"\s*([\d.]+)\s*([kKmM]?)\s*", text)
    if not found:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 200000, 200k or 0.2M)")
    return int(round(float(found.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[found.group(2).lower()]))


def size_name(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 100_000 else f"{n / 1e3:g}k"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description="How Regard's cost grows with the "
                                "corpus (0.2M to 20M pairs), Joey NMT beside it. See docs/PERFORMANCE.md.")
    sizes = lambda text: [parse_size(t) for t in text.split(",") if t.strip()]  # noqa: E731
    p.add_argument("--sizes", type=sizes, default=sizes("0.2M,2M,20M"), help="corpus sizes in pairs (0.2M,2M,20M)")
    p.add_argument("--joey-sizes", type=sizes, default=sizes("0.2M,2M"),
                   help="the sizes Joey NMT is measured at, among --sizes (0.2M,2M)")
    p.add_argument("--skip-joey", action="store_true", help="Regard only")
    p.add_argument("--steps", type=int, default=200, help="training steps per run (200)")
    p.add_argument("--warmup", type=int, default=20, help="steps left out of tokens/s (20)")
    p.add_argument("--skip-install", action="store_true", help="use Joey NMT's venv as it is")
    p.add_argument("--data", default=os.environ.get("REGARD_DATA") or str(REPO.parent / "shared" / "data"),
                   help="folder holding multi30k/ and tatoeba/ (default: $REGARD_DATA or ../shared/data)")
    p.add_argument("--cache", type=Path, help="cache folder (default: $REGARD_CACHE/bench or ~/.cache/regard/bench)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "scale", help="output folder")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    if args.steps < 2 * LOG_EVERY or args.steps % LOG_EVERY or args.warmup % LOG_EVERY:
        p.error(f"--steps must be a multiple of {LOG_EVERY} of at least {2 * LOG_EVERY}, --warmup a multiple of "
                f"{LOG_EVERY}")
    args.warmup = min(args.warmup, args.steps - LOG_EVERY)
    if not args.sizes or min(args.sizes) < 1000:
        p.error("--sizes: give sizes of at least 1000 pairs")
    return args


# ---------------------------------------------------------------- the corpora

def real_pairs(data: Path) -> list[tuple[str, str]]:
    """Multi30k's training pairs, then Tatoeba's (normalised)."""
    m30k, tatoeba = data / "multi30k", data / "tatoeba" / "eng-fra.tsv"
    for path in (m30k / "train.en", m30k / "train.fr", tatoeba):
        if not path.is_file():
            raise SystemExit(f"bench: {path} not found (give --data DIR or set REGARD_DATA)")
    return list(iter_parallel(m30k / "train.en", m30k / "train.fr")) + list(read_tsv(tatoeba))


def build_corpus(pairs: list[tuple[str, str]], folder: Path, n: int) -> tuple[Path, Path]:
    """``corpus-N.{en,fr}``: ``pairs`` repeated, each repetition in its own seeded order, cut at ``n``."""
    src, tgt = folder / f"corpus-{n}.en", folder / f"corpus-{n}.fr"
    stamp = folder / f"corpus-{n}.json"
    recipe = {"base_pairs": len(pairs), "seed": SEED, "pairs": n}
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe and src.is_file() and tgt.is_file():
        return src, tgt
    say(f"writing the {size_name(n)}-pair corpus into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(src) as en, atomic_file(tgt) as fr:
        written, repetition = 0, 0
        while written < n:
            order = np.random.default_rng([SEED, repetition]).permutation(len(pairs))[:n - written]
            for at in range(0, len(order), 100_000):
                chunk = [pairs[i] for i in order[at:at + 100_000].tolist()]
                en.write("".join(s + "\n" for s, _ in chunk))
                fr.write("".join(t + "\n" for _, t in chunk))
            written, repetition = written + len(order), repetition + 1
    write_json(stamp, recipe)
    return src, tgt


# ---------------------------------------------------------------- Regard

def scale_config(base: Config, corpus: tuple[Path, Path], prepared: Path, out_dir: Path) -> Config:
    """The benchmark's model and settings on a synthetic corpus: one process of two threads."""
    cfg = config_from_dict(base.to_dict(), source="bench/configs.py")  # a copy
    cfg.data.train_src, cfg.data.train_tgt = str(corpus[0]), str(corpus[1])
    cfg.data.prepared, cfg.data.dedupe = str(prepared), False
    cfg.train.out_dir, cfg.train.workers, cfg.train.threads = str(out_dir), 1, THREADS
    return cfg


def scale_run(command: str, cfg: Config, work: Path, *extra: str) -> tuple[dict, measure.Finished]:
    """``python -m bench.scale_run COMMAND`` measured; its JSON result and the run."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.json"
    config.write_text(json.dumps(cfg.to_dict(), indent=2))
    out = work / f"{command}.json"
    run = measure.run([sys.executable, "-m", "bench.scale_run", command, str(config), *extra], work / f"{command}.log",
                      REGARD_ENV, stdout=out, cwd=REPO)
    if run.returncode:
        raise RunFailed(f"regard {command} failed (exit {run.returncode}); end of {run.log}:\n{run.tail()}")
    lines = [line for line in out.read_text().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), run


def measure_regard(cfg: Config, work: Path, warmup: int) -> dict:
    say(f"  regard: prepare {cfg.data.train_src}")
    prepared, prep_run = scale_run("prepare", cfg, work / "prepare")
    say(f"    {prep_run.wall_s:.0f} s, {prepared['pairs_per_s']:.0f} pairs/s, peak RSS {prep_run.peak_rss_mib:.0f} MiB, "
        f"{prepared['bytes_on_disk'] / 2**20:.0f} MiB on disk")
    shutil.rmtree(cfg.train.out_dir, ignore_errors=True)
    say(f"  regard: train {cfg.train.max_steps} steps")
    trained, train_run = scale_run("train", cfg, work / "train", "--launched", repr(time.time()))
    rate = measure.train_rate([(s, t, float(n)) for s, t, n in trained["points"]], warmup)
    say(f"    start-up {trained['startup_s']:.1f} s, {rate['train_tok_s']:.0f} tok/s, "
        f"peak RSS {train_run.peak_rss_mib:.0f} MiB")
    return {"prepare": {**prepared, "wall_s": prep_run.wall_s, "peak_rss_mib": prep_run.peak_rss_mib},
            "train": {"startup_s": trained["startup_s"], "peak_rss_mib": train_run.peak_rss_mib,
                      "wall_s": train_run.wall_s, **rate}}


# ---------------------------------------------------------------- Joey NMT

def measure_joey(cfg: Config, pieces: Path, ctx_args: dict, work: Path, steps: int, warmup: int) -> dict:
    """Joey NMT on the pieces of the pairs Regard prepared (written once into ``pieces``)."""
    from bench.data import Prepared
    if not (pieces / "stats.json").is_file():
        say(f"  joeynmt: writing the pairs as pieces into {pieces}")
        shutil.rmtree(pieces, ignore_errors=True)
        scale_run("pieces", cfg, work / "pieces", "--out", str(pieces), "--valid-src", cfg.data.valid_src,
                  "--valid-tgt", cfg.data.valid_tgt)
    prep = Prepared.load(pieces)
    if "joeynmt" not in ctx_args["batch_sizes"]:
        budgets = peer_budgets(prep.pieces("train", "en"), prep.pieces("train", "fr"), BATCH_TOKENS, "matched")
        ctx_args["batch_sizes"] = {name: b["batch_size"] for name, b in budgets.items()}
    ctx = Context(prep, ctx_args["cache"], ctx_args["batch_sizes"])
    say(f"  joeynmt: train {steps} steps (batch_size {ctx.batch_sizes['joeynmt']})")
    shutil.rmtree(work / "joeynmt", ignore_errors=True)
    launched = time.time()
    trained = Joey().train(ctx, work / "joeynmt", steps)
    rate = measure.train_rate(trained.points, warmup)
    first_log = trained.points[0]
    startup = first_log[1] - launched - (first_log[0] - 1) * rate["s_per_step"]
    say(f"    start-up {startup:.1f} s, {rate['train_tok_s']:.0f} tok/s, peak RSS {trained.run.peak_rss_mib:.0f} MiB")
    return {"train": {"startup_s": startup, "peak_rss_mib": trained.run.peak_rss_mib, "wall_s": trained.run.wall_s,
                      "batch_size": ctx.batch_sizes["joeynmt"], **rate}}


# ---------------------------------------------------------------- report

def table(results: dict) -> str:
    fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "—"  # noqa: E731
    lines = ["| system | pairs | prepare s | prepare pairs/s | prepare peak RSS MiB | on disk MiB "
             "| start-up to 1st step s | training peak RSS MiB | target tok/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        name, n = key.split("@")
        p, t = r.get("prepare", {}), r.get("train", {})
        disk = p.get("bytes_on_disk", 0) / 2**20 if p else None
        lines.append(f"| {name} | {size_name(int(n))} | {fmt(p.get('wall_s'), '.0f')} | {fmt(p.get('pairs_per_s'), '.0f')} "
                     f"| {fmt(p.get('peak_rss_mib'), '.0f')} | {fmt(disk, '.0f')} | {fmt(t.get('startup_s'), '.1f')} "
                     f"| {fmt(t.get('peak_rss_mib'), '.0f')} | {fmt(t.get('train_tok_s'), '.0f')} |")
    return "\n".join(lines)


def targets(results: dict, sizes: list[int]) -> list[str]:
    """Issue 16's targets, on the smallest and the largest Regard runs."""
    small, large = (results.get(f"regard@{n}", {}).get("train") for n in (min(sizes), max(sizes)))
    if not small or not large or min(sizes) == max(sizes):
        return []
    lo, hi = size_name(min(sizes)), size_name(max(sizes))
    grow = large["peak_rss_mib"] - small["peak_rss_mib"]
    ratio = large["train_tok_s"] / small["train_tok_s"]
    return [f"training peak RSS at {hi} − at {lo}: {grow:+.0f} MiB (target: at most +300 MiB at 20M)",
            f"start-up to the first step at {hi}: {large['startup_s']:.1f} s (target: under 30 s at 20M)",
            f"tokens/s at {hi} / at {lo}: {ratio:.3f} (target: within 5%)"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache = (args.cache or default_cache()).expanduser()
    folder, work = cache / "scale", args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    joey_sizes = [] if args.skip_joey else [n for n in args.sizes if n in args.joey_sizes]
    if joey_sizes:
        if args.skip_install and not venv_python(cache, "joeynmt").exists():
            raise SystemExit(f"bench: --skip-install, but {venv_python(cache, 'joeynmt')} does not exist")
        if not args.skip_install:
            ensure_peer(PEERS["joeynmt"], cache, log=say)
    base = regard_config(prepare_multi30k(Path(args.data), cache, log=say), Path("unused"), args.steps)
    pairs = real_pairs(Path(args.data))
    results: dict = {}
    ctx_args = {"cache": cache, "batch_sizes": {}}
    load_start = os.getloadavg()
    try:
        for n in sorted(args.sizes):
            say(f"{size_name(n)} pairs")
            corpus = build_corpus(pairs, folder, n)
            cfg = scale_config(base, corpus, folder / f"prepared-{n}", work / str(n) / "run")
            results[f"regard@{n}"] = measure_regard(cfg, work / str(n), args.warmup)
            if n in joey_sizes:
                results[f"joeynmt@{n}"] = measure_joey(cfg, folder / f"pieces-{n}", ctx_args, work / str(n),
                                                       args.steps, args.warmup)
    except RunFailed as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    print(table(results))
    for line in targets(results, args.sizes):
        print(f"- {line}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "scale.json", {
        "results": results, "settings": {"steps": args.steps, "warmup": args.warmup, "seed": SEED,
                                         "model": "bench/configs.py (one process of two threads, dedupe off)"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg()}})
    say(f"wrote {args.out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
