"""The Regard side of ``bench.scale``, each command run as its own measured process.

    python -m bench.scale_run prepare CONFIG.json
    python -m bench.scale_run train CONFIG.json --launched T
    python -m bench.scale_run pieces CONFIG.json --out DIR --valid-src F --valid-tgt F

``prepare`` prepares the config's training data from nothing (:func:`regard.data.binarise.prepare`);
``train`` trains from it for ``train.max_steps`` steps, recording the time from ``T`` (when the
parent launched this process, ``time.time()``) to the end of the first step and the target
tokens of every 10 steps, as ``bench.regard_run`` does; ``pieces`` writes the prepared pairs as
space-separated SentencePiece pieces, with vocabularies, for Joey NMT. Each prints one JSON
object as its last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

from bench.configs import LOG_EVERY
from regard.config import Config, config_from_dict
from regard.data.binarise import FileSource, open_prepared, prepare, prepared_dir
from regard.data.text import read_parallel
from regard.data.tokenizer import EOS


def peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def run_prepare(cfg: Config) -> dict:
    folder = prepared_dir(cfg)
    shutil.rmtree(folder, ignore_errors=True)
    tic = time.perf_counter()
    manifest = prepare(cfg, FileSource.from_config(cfg), log=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - tic
    on_disk = sum(p.stat().st_size for p in folder.iterdir())
    return {"seconds": seconds, "read": manifest["cleaning"]["read"], "pairs": manifest["pairs"],
            "pairs_per_s": manifest["cleaning"]["read"] / seconds, "shards": len(manifest["shards"]),
            "bytes_on_disk": on_disk, "processes": manifest["prepared"]["processes"],
            "self_peak_rss_mib": peak_mib(), "workers_peak_rss_mib": peak_mib(resource.RUSAGE_CHILDREN)}


def run_train(cfg: Config, launched: float) -> dict:
    from regard.training import trainer  # here: preparing imports no torch, and its memory is measured
    points: list[tuple[int, float, int]] = []
    state = {"tokens": 0, "first_step_at": None}

    def on_step(step: int, tokens: int) -> None:
        if step == 1:
            state["first_step_at"] = time.time()
        state["tokens"] += tokens
        if step % LOG_EVERY == 0:
            points.append((step, time.perf_counter(), state["tokens"]))
            state["tokens"] = 0

    trainer.train(cfg, show_progress=False, on_step=on_step)
    return {"startup_s": state["first_step_at"] - launched, "points": points, "self_peak_rss_mib": peak_mib()}


def write_lines(path: Path, lines) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")


def run_pieces(cfg: Config, out: Path, valid: tuple[str, str]) -> dict:
    """Regard's training pairs (after cleaning and ``max_len``), as the peers read them."""
    prepared = open_prepared(prepared_dir(cfg))
    pairs, (src_tok, tgt_tok) = prepared.pairs, prepared.tokenizers
    out.mkdir(parents=True, exist_ok=True)
    for side, tok in ((0, src_tok), (1, tgt_tok)):
        lang = ("en", "fr")[side]
        write_lines(out / f"train.{lang}", (" ".join(tok.pieces(pairs.pair(i)[side].tolist())) for i in range(len(pairs))))
        write_lines(out / f"vocab.{lang}", tok.pieces(list(range(EOS + 1, len(tok)))))
        texts = [p[side] for p in read_parallel(*valid)]
        write_lines(out / f"val.{lang}", (" ".join(tok.pieces(ids)) for ids in tok.encode_batch(texts)))
    stats = {"corpus": str(Path(valid[0]).parent), "pairs": len(pairs), "src_vocab": len(src_tok),
             "tgt_vocab": len(tgt_tok), "max_len": cfg.data.max_len}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_run")
    parser.add_argument("command", choices=["prepare", "train", "pieces"])
    parser.add_argument("config", type=Path, help="the Config as JSON (Config.to_dict())")
    parser.add_argument("--launched", type=float, help="train: time.time() when the parent started this process")
    parser.add_argument("--out", type=Path, help="pieces: the folder to write")
    parser.add_argument("--valid-src", help="pieces: validation source file")
    parser.add_argument("--valid-tgt", help="pieces: validation target file")
    args = parser.parse_args()
    cfg = config_from_dict(json.loads(args.config.read_text()), source=str(args.config))
    if args.command == "prepare":
        result = run_prepare(cfg)
    elif args.command == "train":
        result = run_train(cfg, args.launched)
    else:
        result = run_pieces(cfg, args.out, (args.valid_src, args.valid_tgt))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
