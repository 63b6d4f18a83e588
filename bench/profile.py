"""Where Regard's time goes: the training step by part, and translation by precision and beam.

    python -m bench.profile train [--bf16] [--batches 40] [--ops]
    python -m bench.profile translate --model DIR --src FILE [--limit N] [--ops]

``train`` uses the benchmark's model and prepared data (run ``make bench`` once first) and
times, per batch of about 2,000 target tokens, forward + backward of (a) the encoder alone,
(b) encoder and decoder loop without the output layer, (c) the whole loss. The differences
give each part's share. ``translate`` times :meth:`regard.Translator.translate` on FILE for
fp32, bf16 and int8, greedy and beam 5. ``--ops`` adds the torch profiler's top operators.
Run it on a quiet machine: it measures whatever else the CPU is doing too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.configs import THREADS, regard_config
from bench.data import Prepared
from bench.install import default_cache
from regard.data.batching import batch_indices, collate
from regard.data.text import read_lines, read_parallel
from regard.model.seq2seq import Seq2Seq
from regard.data.prepare import build_tokenizers, encode_pairs
from regard.translator import PRECISIONS, Translator


def top_ops(fn, rows: int = 15) -> str:
    """The torch profiler's table of the operators ``fn()`` spends most time in."""
    from torch.profiler import profile
    with profile() as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def ms_per_call(fn, items: list, warmup: int = 5) -> float:
    for item in items[:warmup]:
        fn(item)
    tic = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - tic) / len(items) * 1000


def profile_train(bf16: bool, n_batches: int, ops: bool) -> None:
    prep = Prepared.load(latest_prep())
    cfg = regard_config(prep, Path("unused"), 1, precision="bf16" if bf16 else "fp32")
    pairs = read_parallel(prep.clean("en"), prep.clean("fr"))
    toks = build_tokenizers(cfg, pairs)
    examples = encode_pairs(pairs, *toks, cfg.data.max_len)
    torch.manual_seed(1)
    model = Seq2Seq(cfg.model, len(toks[0]), len(toks[1])).train()
    batches = [collate([examples[i] for i in b]) for b in batch_indices(examples, cfg.train.batch_tokens, 1, 0)]
    batches = batches[:n_batches]
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731

    def encoder(b):
        with autocast():
            enc = model.encode(b.src, b.src_lengths)
        (enc.memory.float().sum() + enc.final.float().sum()).backward()

    def decoder_loop(b):
        with autocast():
            attentional, _ = model.decoder(b.tgt_in, model.encode(b.src, b.src_lengths))
        attentional.float().sum().backward()

    def whole(b):  # as training does it: the output layer and loss in chunks
        with autocast():
            loss = model.training_loss(b, cfg.train.label_smoothing)
        loss.backward()

    times = {name: ms_per_call(fn, batches) for name, fn in
             (("encoder", encoder), ("encoder+decoder loop", decoder_loop), ("whole step", whole))}
    tokens = sum(b.n_tokens for b in batches) / len(batches)
    enc, loop, total = times["encoder"], times["encoder+decoder loop"], times["whole step"]
    print(f"training, {'bf16 autocast' if bf16 else 'fp32'}, {torch.get_num_threads()} threads, "
          f"{len(batches)} batches of {tokens:.0f} target tokens (forward + backward, no optimizer):")
    for name, ms in (("encoder", enc), ("decoder loop", loop - enc), ("output layer + loss", total - loop)):
        print(f"  {name:<20}{ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"  {'total':<20}{total:8.1f} ms  = {tokens / total * 1000:.0f} target tokens/s")
    if ops:
        print(top_ops(lambda: [whole(b) for b in batches[:10]]))


def profile_translate(model: Path, src: Path, limit: int | None, ops: bool) -> None:
    lines = list(read_lines(src))[:limit]
    print(f"translating {len(lines)} sentences of {src}, {torch.get_num_threads()} threads:")
    print(f"  {'precision':<10}{'beam':>5}{'sent/s':>9}{'mean subwords out':>19}")
    for precision in PRECISIONS:
        translator = Translator.load(model, precision=precision, device="cpu")  # a CPU profile, GPU or not
        translator.translate(lines[:32], beam=5)  # warm-up
        for beam in (1, 5):
            tic = time.perf_counter()
            out = translator.translate(lines, beam=beam)
            seconds = time.perf_counter() - tic
            mean = sum(len(t.tokens) for t in out) / len(out)
            print(f"  {precision:<10}{beam:>5}{len(lines) / seconds:9.1f}{mean:19.1f}", flush=True)
        if ops and precision == "bf16":
            print(top_ops(lambda: translator.translate(lines[:300], beam=5)))


def latest_prep() -> Path:
    """The most recently prepared benchmark data folder in the cache."""
    folders = sorted((default_cache() / "data").glob("*/stats.json"), key=lambda p: p.stat().st_mtime)
    if not folders:
        raise SystemExit("no prepared benchmark data: run `make bench` once first")
    return folders[-1].parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="time the parts of a training step on the benchmark model")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--ops", action="store_true", help="also print the profiler's top operators")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"torch threads (default {THREADS}; each of train.workers: 2 has 1)")
    p = sub.add_parser("translate", help="sentences/s per precision and beam")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--limit", type=int)
    p.add_argument("--ops", action="store_true", help="also print the profiler's top operators (bf16, beam 5)")
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", THREADS))
    if args.command == "train":
        profile_train(args.bf16, args.batches, args.ops)
    else:
        profile_translate(args.model, args.src, args.limit, args.ops)


if __name__ == "__main__":
    main()
