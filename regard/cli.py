"""The ``regard`` command: thin wrappers around the library.

User mistakes (:class:`RegardError`) print one clear line and exit with 2;
nothing already written is truncated by a failed command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Iterator

from regard.alignment.commands import add_align_parsers
from regard.errors import Interrupted, RegardError, RegardWarning, Terminated
from regard.files import check_file_target, check_folder_target
from regard.options import (add_inference_options, at_least, bounded_lines, check_beam, check_inference_options,
                            flag)
from regard.serving.settings import ServeSettings, SettingError

THREADS_HELP = ("CPU threads for PyTorch (default: all cores); in the processes of 'translate/evaluate "
                "--workers N', threads per process (default: 1); for 'train', per process (train.threads)")

EXAMPLES = """examples:
  regard demo --out runs/demo
  regard train --config configs/example.yaml
  regard translate --model runs/demo/model --beam 5 < input.en > output.fr
  regard plot --model runs/demo/model "the black cat ate the mouse" -o cat.png
  regard serve --model att=runs/demo/attention --model none=runs/demo/baseline --port 8000
  regard data fetch multi30k --from ../shared/data
  regard data prepare --config configs/example.yaml
  regard evaluate --model runs/att --model runs/none --corpus multi30k --json-out r.json --plot bleu.png
  regard average --model runs/transformer --last 5 -o runs/transformer/averaged
  regard translate --model runs/att --model runs/transformer --beam 5 < input.en > output.fr   # an ensemble
  regard align --model runs/en-fr --reverse-model runs/fr-en --src test.e --tgt test.f -o links.txt
  regard evaluate-alignment --gold test.wa --links links.txt --src test.e --tgt test.f
"""


def cmd_train(args: argparse.Namespace) -> None:
    from regard.config import load_config, validate
    from regard.training.distributed import Ranks
    from regard.training.trainer import train
    cfg = load_config(args.config, args.set)
    for key, value in (("out_dir", args.out), ("workers", args.workers), ("threads", args.threads or None),
                       ("log_every", args.log_every)):
        if value is not None:
            setattr(cfg.train, key, value)
    validate(cfg, "command line")
    out = train(cfg, resume=args.resume, show_progress=not args.quiet)
    if Ranks.from_env().is_main:
        print(f"done: best model in {out / 'best'}", file=sys.stderr)


def input_lines(path: str | None) -> Iterator[str]:
    """Normalised lines of a file, or of stdin for None or '-' (empty lines kept)."""
    from regard.data.text import decode_stream, normalize, read_lines
    if path and path != "-":
        yield from read_lines(path, allow_empty=True)
        return
    for _, line in decode_stream(sys.stdin.buffer, "<stdin>"):
        yield normalize(line)


def chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def format_output(index: int, hyps, nbest: int, as_json: bool) -> list[str]:
    if as_json:
        return [json.dumps([h.to_dict() for h in hyps] if nbest > 1 else hyps[0].to_dict(), ensure_ascii=False)]
    if nbest == 1:
        return [hyps[0].text]
    return [f"{index} ||| {h.text} ||| {h.score:.4f}" for h in hyps]


def warn(message: str) -> None:
    print(f"regard: warning: {message}", file=sys.stderr)


def cmd_translate(args: argparse.Namespace) -> None:
    from regard.pool import open_translator
    check_inference_options(args)
    if args.output:
        check_file_target(args.output, "-o")
    models = args.model[0] if len(args.model) == 1 else args.model  # several: an ensemble
    with open_translator(models, args.precision, args.workers, args.device, args.threads or 1) as translator:
        if translator.attention_from:
            print(f"ensemble of {len(args.model)} models; the attention in --json output is the first's "
                  f"({translator.attention_from})", file=sys.stderr)
        translate_file(args, translator)


def translate_file(args: argparse.Namespace, translator) -> None:
    """Translate ``args.input`` to ``args.output`` (replaced atomically, only when all is done) or
    stdout (line by line as they are translated)."""
    from regard.files import atomic_file
    from regard.search.common import check_nbest
    beam = args.beam or translator.cfg.search.beam
    check_beam(args.beam, args.max_beam, translator.cfg.search.beam)
    try:
        check_nbest(args.nbest, beam)
    except ValueError as err:
        raise RegardError(f"--{err}") from None
    from tqdm import tqdm
    total = count_lines(args.input)
    where = args.input if args.input and args.input != "-" else "<stdin>"
    lines = bounded_lines(input_lines(args.input), args.max_chars, args.truncate, where, warn)
    with atomic_file(args.output) if args.output else nullcontext(sys.stdout) as sink:
        bar = tqdm(total=total, unit="line", disable=total is None or not sys.stderr.isatty(), file=sys.stderr)
        index = 0
        for chunk in chunks(lines, 500):
            found = translator.translate_nbest(chunk, beam=args.beam, nbest=args.nbest, stopping=args.stopping)
            for hyps in found:
                sink.write("\n".join(format_output(index, hyps, args.nbest, args.json)) + "\n")
                index += 1
            sink.flush()
            bar.update(len(chunk))
        bar.close()


def count_lines(path: str | None) -> int | None:
    """Lines in an input file (for the progress bar); None for stdin or unreadable files."""
    if not path or path == "-" or path.endswith(".gz") or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def cmd_plot(args: argparse.Namespace) -> None:
    from regard.plotting import attention_views, check_plot_target, plot_attention, plot_attention_grid
    from regard.translator import Translator
    check_inference_options(args)
    if not args.sentence.strip():
        raise RegardError("the sentence to plot is empty")
    sentence = next(bounded_lines([args.sentence], args.max_chars, args.truncate, "the sentence", warn))
    check_plot_target(args.output, "-o")
    translator = Translator.load(args.model[0] if len(args.model) == 1 else args.model, device=args.device)
    if not translator.has_attention:
        raise RegardError(f"{args.model[0]} was trained with attention: none; there is no attention to draw")
    check_beam(args.beam, args.max_beam, translator.cfg.search.beam)
    t = translator.translate_nbest([sentence], beam=args.beam, heads=True)[0][0]
    words = args.level == "word"
    source, target = (t.source_words, t.target_words) if words else (t.source_tokens, t.tokens)
    matrices = t.head_word_attention if words else t.head_attention
    layer = args.layer or translator.model.attention_layer + 1
    views = attention_views(matrices, layer, args.head, args.heads_grid)
    title = f"{t.source}  →  {t.text}"
    if t.attention_from:
        title += f"\nattention of the ensemble's first model, {t.attention_from}"
    if args.heads_grid:
        path = plot_attention_grid(views, source, target, args.output, title=title)
    else:
        (name, weights), = views.items()
        path = plot_attention(weights, source, target, args.output, title=title, label=name)
    print(f"{t.text}\nwrote {path}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> None:
    from regard.demo import DEMO_SEED, run_demo
    check_folder_target(args.out, "--out")
    run_demo(args.out, args.steps, args.baseline_steps, DEMO_SEED if args.seed is None else args.seed)


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from regard.data.corpora import fetch, fetched_summary
    folder = fetch(args.name, args.cache, args.from_dir, log=lambda message: print(message, file=sys.stderr))
    print(fetched_summary(folder))


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from regard.config import load_config
    from regard.data.binarise import FileSource, MISSING, prepare, prepared_dir, stale_reason
    cfg = load_config(args.config, args.set)
    source = FileSource.from_config(cfg)
    reason = stale_reason(cfg, source)
    folder = prepared_dir(cfg)
    if reason is None:
        print(f"{folder} is up to date")
        return
    if reason != MISSING:
        print(f"preparing {folder} again: {reason}", file=sys.stderr)
    manifest = prepare(cfg, source, processes=args.processes)
    print(f"{folder}: {manifest['pairs']} pairs, {len(manifest['shards'])} shards, "
          f"{manifest['prepared']['pairs_per_s']:.0f} pairs/s")


def cmd_data_list(args: argparse.Namespace) -> None:
    from regard.data.corpora import CORPORA, default_cache, describe
    cache = Path(args.cache).expanduser() if args.cache else default_cache()
    for corpus in CORPORA.values():
        fetched = (cache / corpus.name / "corpus.json").is_file()
        print(f"{describe(corpus)}\n  cached: {cache / corpus.name if fetched else 'no'}")


def pairs_from_args(args: argparse.Namespace, allow_empty: bool):
    """Pairs from --tsv, or from --src and --tgt (``regard data split`` and ``clean``)."""
    from regard.data.corpora import read_pairs
    if len(args.suffixes.split(",")) != 2:
        raise RegardError(f"--suffixes must be two names separated by a comma, got {args.suffixes!r}")
    if args.tsv and not (args.src or args.tgt):
        return read_pairs(args.tsv, None, args.columns, allow_empty)
    if args.src and args.tgt and not args.tsv:
        return read_pairs(args.src, args.tgt, allow_empty=allow_empty)
    raise RegardError("give either --tsv FILE or both --src FILE and --tgt FILE")


def cmd_data_split(args: argparse.Namespace) -> None:
    from regard.data.corpora import grouped_split, write_split
    split = grouped_split(pairs_from_args(args, allow_empty=False), args.valid, args.test, args.seed)
    write_split(split, Path(args.out), tuple(args.suffixes.split(",")))
    sizes = ", ".join(f"{name} {len(pairs)}" for name, pairs in split.items())
    print(f"wrote {args.out}/{{train,valid,test}}.{{{args.suffixes}}}: {sizes} pairs (seed {args.seed})")


def cmd_data_clean(args: argparse.Namespace) -> None:
    from regard.data.cleaning import clean_pairs, format_report
    from regard.data.corpora import write_split
    kept, report = clean_pairs(pairs_from_args(args, allow_empty=True), args.max_words, args.max_ratio,
                               not args.keep_duplicates)
    print(format_report(report, args.tsv or args.src))
    if args.out:
        out = Path(args.out)
        write_split({out.name: kept}, out.parent, tuple(args.suffixes.split(",")))
        print(f"wrote {out}.{{{args.suffixes}}}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from regard.evaluation import (BUCKETS, evaluate_model, format_result, parse_buckets, plot_bleu_by_length,
                                   read_test_set)
    from regard.files import write_json
    if args.json_out:
        check_file_target(args.json_out, "--json-out")
    if args.plot:
        from regard.plotting import check_plot_target
        check_plot_target(args.plot, "--plot")
    if args.corpus and not (args.src or args.ref):
        from regard.data.corpora import split_files
        src, ref = split_files(args.corpus, args.split)
    elif args.src and args.ref and not args.corpus:
        src, ref = args.src, args.ref
    else:
        raise RegardError("give --src and --ref, or --corpus NAME (with --split)")
    models = [*(args.model or []), *(ensemble_members(spec) for spec in args.ensemble or [])]
    if not models:
        raise RegardError("give at least one --model or --ensemble")
    if args.name and len(args.name) != len(models):
        also = " and --ensemble (in that order)" if args.ensemble else ""
        raise RegardError(f"{len(args.name)} --name for {len(models)} --model{also}: give one per model or none")
    check_inference_options(args)
    edges = parse_buckets(args.buckets) if args.buckets else BUCKETS
    sources, references = read_test_set(src, ref)
    sources = list(bounded_lines(sources, args.max_chars, args.truncate, str(src), warn))
    results = []
    for i, model in enumerate(models):
        results.append(evaluate_model(model, sources, references, args.beam, edges,
                                      args.name[i] if args.name else None, args.precision, args.stopping,
                                      args.workers, args.device, args.threads or 1))
        print(format_result(results[-1]), flush=True)
    if args.json_out:
        write_json(args.json_out, {"source": str(src), "reference": str(ref), "results": results})
        print(f"wrote {args.json_out}", file=sys.stderr)
    if args.plot:
        title = f"{args.corpus} {args.split}" if args.corpus else f"{Path(src).name} → {Path(ref).name}"
        print(f"wrote {plot_bleu_by_length(results, args.plot, title=title)}", file=sys.stderr)


def ensemble_members(spec: str) -> list[str]:
    """``--ensemble A,B`` → ``["A", "B"]``: at least two model folders."""
    members = [part.strip() for part in spec.split(",") if part.strip()]
    if len(members) < 2:
        raise RegardError(f"--ensemble {spec!r}: give two or more model folders separated by commas")
    return members


def cmd_average(args: argparse.Namespace) -> None:
    from regard.averaging import average_run
    out, chosen = average_run(args.model, args.output, args.last)
    names = chosen[0].name if len(chosen) == 1 else f"{chosen[0].name} … {chosen[-1].name}"
    print(f"wrote {out}: the average of {len(chosen)} checkpoint{'s' if len(chosen) > 1 else ''} ({names})",
          file=sys.stderr)


def cmd_plot_bleu(args: argparse.Namespace) -> None:
    from regard.evaluation import load_results, plot_bleu_by_length
    from regard.plotting import check_plot_target
    check_plot_target(args.output, "-o")
    print(f"wrote {plot_bleu_by_length(load_results(args.results), args.output, args.title)}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> None:
    from regard.serving import create_app
    from regard.serving.models import load_models
    from regard.serving.server import serve
    check_inference_options(args)
    try:
        settings = ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)})
    except SettingError as err:
        raise RegardError(f"{flag(err.name)} {err.problem}") from None
    models = load_models(args.model, precision=args.precision, stopping=args.stopping, device=args.device)
    print(f"serving {', '.join(models)} on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    settings = settings.allowing(args.host)
    serve(create_app(models, settings), args.host, args.port, settings)


def add_serve_parser(sub) -> None:
    """``regard serve``: the attention explorer page and REST API."""
    p = sub.add_parser("serve", help="web page and REST API: translate and see the attention in a browser")
    p.add_argument("--model", required=True, action="append", metavar="[NAME=]DIR",
                   help="model folder, optionally named; repeat to compare models side by side (first = default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    for f in fields(ServeSettings):
        p.add_argument(flag(f.name), type=type(f.default), default=f.default,
                       help=f"{f.metadata['help']} (default: %(default)s)")
    add_inference_options(p, ("precision", "stopping", "device"))
    p.set_defaults(func=cmd_serve)


def add_data_parser(sub) -> None:
    """``regard data {list,fetch,split,clean,prepare}``."""
    data = sub.add_parser("data", help="public corpora: list, fetch (with checksums), split, clean; prepare "
                          "a config's training data")
    cmds = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = cmds.add_parser("list", help="the corpus catalogue, with licences and what is cached")
    p.add_argument("--cache", help="cache folder (default: $REGARD_CACHE or ~/.cache/regard)")
    p.set_defaults(func=cmd_data_list)
    p = cmds.add_parser("fetch", help="download a corpus (or copy it --from a folder) into the cache")
    p.add_argument("name", help="corpus name (see 'regard data list')")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="take a local copy from DIR (the corpus folder or its parent) instead of downloading")
    p.add_argument("--cache", help="cache folder (default: $REGARD_CACHE or ~/.cache/regard)")
    p.set_defaults(func=cmd_data_fetch)
    for name, helptext in (("split", "train/valid/test split, grouped so no source sentence is in two splits"),
                           ("clean", "drop empty, too long, badly proportioned and duplicate pairs, with a report")):
        p = cmds.add_parser(name, help=helptext)
        p.add_argument("--tsv", help="tab-separated source<TAB>target file (.gz accepted)")
        p.add_argument("--columns", type=at_least(2), default=2, help="fields per TSV line; the first two are used")
        p.add_argument("--src", help="source file, one sentence per line (with --tgt)")
        p.add_argument("--tgt", help="target file, line-aligned with --src")
        p.add_argument("--suffixes", default="en,fr", help="file suffixes of the two sides (default: en,fr)")
        if name == "split":
            p.add_argument("--out", required=True, help="folder for {train,valid,test}.{en,fr}")
            p.add_argument("--seed", type=at_least(0), default=1, help="seed of the random split (default: 1)")
            p.add_argument("--valid", type=at_least(0), default=2000, help="validation pairs (at least; default 2000)")
            p.add_argument("--test", type=at_least(0), default=2000, help="test pairs (at least; default 2000)")
            p.set_defaults(func=cmd_data_split)
        else:
            p.add_argument("--max-words", type=at_least(0), default=80,
                           help="drop pairs with more words a side (0 = off)")
            p.add_argument("--max-ratio", type=float, default=4.0, help="drop pairs with a longer character-length "
                           "ratio (0 = off)")
            p.add_argument("--keep-duplicates", action="store_true", help="keep exact duplicate pairs")
            p.add_argument("--out", metavar="PREFIX", help="write the kept pairs to PREFIX.en and PREFIX.fr")
            p.set_defaults(func=cmd_data_clean)
    p = cmds.add_parser("prepare", help="clean, subword-encode and binarise a config's training data into "
                        "data.prepared (regard train does it when the data is missing or stale)")
    p.add_argument("--config", required=True, help="YAML config (see configs/example.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set data.prepared=data/wmt14")
    p.add_argument("--processes", type=int, help="worker processes for cleaning and encoding (default: one "
                   "per core)")
    p.set_defaults(func=cmd_data_prepare)


def add_evaluate_parsers(sub) -> None:
    """``regard evaluate`` and ``regard plot-bleu``."""
    p = sub.add_parser("evaluate", help="BLEU (with signature), chrF and BLEU by sentence length of models")
    p.add_argument("--model", action="append", help="model folder; repeat to compare models")
    p.add_argument("--ensemble", action="append", metavar="DIR,DIR[,...]",
                   help="model folders translating together as one ensemble (their log-probabilities averaged); "
                        "repeat for several ensembles, scored after the --model ones")
    p.add_argument("--name", action="append", help="label of each --model in the output (default: folder name)")
    p.add_argument("--src", help="source sentences, one per line")
    p.add_argument("--ref", help="reference translations, line-aligned with --src")
    p.add_argument("--corpus", help="use a fetched corpus's split instead of --src/--ref")
    p.add_argument("--split", default="test", help="split of --corpus (default: test)")
    p.add_argument("--buckets", help="upper edges of the length buckets in source words (default: 8,12,16,20)")
    add_inference_options(p)
    p.add_argument("--json-out", help="write scores, signatures, buckets and translations as JSON")
    p.add_argument("--plot", help="PNG of BLEU against source length, one line per model")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("plot-bleu", help="draw BLEU by sentence length from 'evaluate --json-out' files")
    p.add_argument("results", nargs="+", help="JSON files written by 'regard evaluate --json-out'")
    p.add_argument("-o", "--output", default="bleu_by_length.png", help="PNG file (default: bleu_by_length.png)")
    p.add_argument("--title", help="chart title")
    p.set_defaults(func=cmd_plot_bleu)


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes are a :class:`RegardError`: one line, exit 2, like every other."""

    def error(self, message: str):
        message = re.sub(r"^argument (\S+): (must be )", r"\1 \2", message)  # --beam must be at least 1, ...
        raise RegardError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="regard", description="Neural machine translation with attention: train, translate, "
        "and see what the decoder looks at.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=at_least(0), default=0, help=THREADS_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML config (see configs/example.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the run in train.out_dir from last/")
    p.add_argument("--out", help="override train.out_dir")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.threads=1 --set train.max_minutes=30")
    p.add_argument("--workers", type=at_least(1), help="processes on this machine, each taking a share of every batch "
                   "(train.workers; DistributedDataParallel). For several machines use torchrun (README)")
    p.add_argument("--log-every", type=at_least(0), metavar="N", help="a plain progress line every N steps instead of "
                   "the bar (train.log_every)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines; validation results only")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate text, one line out per line in")
    p.add_argument("--model", required=True, action="append",
                   help="model folder (or a training run folder); repeat for an ensemble that averages the models' "
                        "log-probabilities (they must share subword models)")
    p.add_argument("--nbest", type=at_least(1), default=1, help="print the N best as 'i ||| text ||| score'")
    p.add_argument("--input", "-i", help="input file (default: stdin); empty lines give empty lines")
    p.add_argument("--output", "-o", help="output file, replaced only when all input is translated")
    p.add_argument("--json", action="store_true", help="one JSON object per line with tokens and attention")
    add_inference_options(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("plot", help="draw the attention diagram of one sentence")
    p.add_argument("--model", required=True, action="append",
                   help="model folder; repeat for an ensemble (the attention drawn is the first model's)")
    p.add_argument("sentence", help="English sentence to translate and draw")
    p.add_argument("-o", "--output", default="attention.png", help="PNG file (default: attention.png)")
    add_inference_options(p, ("beam", "device", "max_chars", "truncate", "max_beam"))
    p.add_argument("--level", choices=["word", "subword"], default="word", help="label axes by word or subword")
    p.add_argument("--layer", type=int, metavar="N", help="Transformer: the decoder layer whose cross-attention "
                   "to draw, 1 = the first (default: the model's, model.attention_layer; the last)")
    p.add_argument("--head", type=int, metavar="N", help="Transformer: draw head N of the layer alone "
                   "(default: the average of its heads)")
    p.add_argument("--heads-grid", action="store_true",
                   help="Transformer: draw every head of the layer, and their average, in a grid")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("average", help="average the parameters of a run's last step checkpoints into a model")
    p.add_argument("--model", required=True, metavar="RUN",
                   help="training run folder whose checkpoints/ were kept by train.keep_checkpoints")
    p.add_argument("--last", type=int, metavar="N", help="average the newest N checkpoints (default: all kept)")
    p.add_argument("-o", "--output", required=True, help="model folder to write (replaced if it is one)")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("demo", help="train on the built-in English→French grammar, translate, draw")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--steps", type=at_least(1), default=1200,
                   help="training steps of the attention model (default 1200)")
    p.add_argument("--baseline-steps", type=at_least(1), default=1200,
                   help="training steps of the attention: none model (default 1200, the same budget)")
    p.add_argument("--seed", type=at_least(0), help="seed of the generated data and of training (default: the one "
                   "the README's figures come from)")
    p.set_defaults(func=cmd_demo)
    add_data_parser(sub)
    add_evaluate_parsers(sub)
    add_serve_parser(sub)
    add_align_parsers(sub)
    return parser


def _terminate(signum: int, frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_exception():
    """While in the block, SIGTERM raises :class:`Terminated` in the main thread, so that every
    cleanup runs (no temporary file is left) as for Ctrl-C. Training installs its own handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Regard's own warnings as one ``regard: warning:`` line; others as Python shows them."""
    if issubclass(category, RegardWarning):
        warn(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = show_warning
    try:
        args = build_parser().parse_args(argv)
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        with sigterm_as_exception():
            args.func(args)
    except RegardError as err:
        print(f"regard: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"regard: {err}", file=sys.stderr)
        return 130
    except Terminated:
        print("regard: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("regard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # what the file system refused, in a line (writes already say so as RegardError)
        where = f"{err.filename}: " if err.filename else ""
        print(f"regard: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    return 0
