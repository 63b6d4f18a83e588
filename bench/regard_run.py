"""The Regard side of the benchmark, run as its own process (so its peak RSS is its own).

``train``: Regard's real training loop (:func:`regard.training.trainer.train`) on the
prepared data, through its two hooks: ``on_step`` records the time and the real target
tokens every 10 steps (the points the peers log at), ``tokenizers`` compares the
SentencePiece models Regard trains with the ones the peers' pieces came from.
``translate``: :meth:`regard.Translator.translate` timed around the call alone, model
loading excluded as the peers' own timers exclude it.

Both print one JSON object as their last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from bench.configs import ARCHS, BEAM_STOPPING, LOG_EVERY, TRANSLATE_BATCH, TRANSLATE_WORKERS, regard_config
from bench.data import Prepared
from regard.data.text import read_lines, read_parallel
from regard.errors import Interrupted
from regard.config import apply_overrides, config_from_dict
from regard.data.prepare import build_tokenizers
from regard.training import trainer
from regard.search.common import STOPPING
from regard.pool import open_translator
from regard.translator import PRECISIONS


def train(prep: Prepared, out: Path, steps: int, precision: str, valid_sentences: int,
          overrides: list[str] = (), arch: str = "rnn") -> dict:
    """Train the benchmark's model of ``arch`` for ``steps`` (or until SIGINT), with
    ``SECTION.KEY=VALUE`` overrides; return timing points and checks."""
    cfg = regard_config(prep, out, steps, precision=precision, arch=arch)
    cfg = config_from_dict(apply_overrides(cfg.to_dict(), list(overrides)), source="--set")
    pairs = read_parallel(prep.clean("en"), prep.clean("fr"))
    valid = read_parallel(prep.original("val", "en"), prep.original("val", "fr"))[:valid_sentences]
    points: list[tuple[int, float, int]] = []
    state = {"step": 0, "tokens": 0, "same_subwords": None}

    def on_step(step: int, tokens: int) -> None:
        state["step"], state["tokens"] = step, state["tokens"] + tokens
        if step % LOG_EVERY == 0:
            points.append((step, time.perf_counter(), state["tokens"]))
            state["tokens"] = 0

    def checked_tokenizers(cfg, pairs):
        toks = build_tokenizers(cfg, pairs)
        state["same_subwords"] = all(t.proto == prep.spm(lang).read_bytes() for t, lang in zip(toks, ("en", "fr")))
        return toks

    interrupted = False
    try:
        trainer.train(cfg, data=(pairs, valid), show_progress=False, on_step=on_step, tokenizers=checked_tokenizers)
    except Interrupted:
        interrupted = True
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if cfg.train.workers > 1 else 0.0
    return {"points": points, "steps": state["step"], "same_subwords": state["same_subwords"],
            "interrupted": interrupted, "model": str(out / "last"), "worker_peak_rss_mib": workers_rss}


def translate(model: Path, src: Path, out: Path, beam: int, limit: int | None, precision: str,
              stopping: str = BEAM_STOPPING, workers: int = TRANSLATE_WORKERS) -> dict:
    """Translate ``src`` (first ``limit`` lines) and time the call (model loading, and starting
    the ``workers`` processes when more than one, excluded)."""
    lines = list(read_lines(src))[:limit]
    with open_translator(model, precision, workers, device="cpu") as translator:  # the benchmark is on CPU
        tic = time.perf_counter()
        results = translator.translate(lines, beam=beam, batch_size=TRANSLATE_BATCH, stopping=stopping)
        seconds = time.perf_counter() - tic
    out.write_text("".join(r.text + "\n" for r in results), encoding="utf-8")
    # The parent's wait4 sees the largest peak of this process and its workers, not their sum:
    # report this process's own peak plus, the workers having ended, the largest worker's peak
    # once per worker (an upper bound of their sum).
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 * workers if workers > 1 else 0.0
    return {"seconds": seconds, "sentences": len(lines), "out_tokens": sum(len(r.tokens) + 1 for r in results),
            "inference_dtype": precision, "stopping": stopping, "workers": workers,
            "own_peak_rss_mib": own_rss, "workers_peak_rss_mib": workers_rss}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.regard_run")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--prep", required=True, type=Path, help="prepared data folder (bench.data)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--steps", required=True, type=int)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="train.precision")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a value of the benchmark's config, e.g. train.grad_compression=bf16")
    p.add_argument("--valid-sentences", type=int, default=20)
    p.add_argument("--arch", choices=ARCHS, default="rnn", help="the benchmark's model (bench.configs)")
    p = sub.add_parser("translate")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--limit", type=int)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="inference weights (default fp32)")
    p.add_argument("--stopping", choices=STOPPING, default=BEAM_STOPPING,
                   help=f"beam search's stopping rule (default {BEAM_STOPPING})")
    p.add_argument("--workers", type=int, default=TRANSLATE_WORKERS,
                   help=f"processes of 1 thread that share the batches (default {TRANSLATE_WORKERS}; 1 = this "
                        "process, with 2 threads)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.command == "train":
        result = train(Prepared.load(args.prep), args.out, args.steps, args.precision, args.valid_sentences,
                       args.set, args.arch)
    else:
        result = translate(args.model, args.src, args.out, args.beam, args.limit, args.precision, args.stopping,
                           args.workers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
