"""The ``regard`` command: thin wrappers around the library.

User mistakes (:class:`RegardError`) print one clear line and exit with 2;
nothing already written is truncated by a failed command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from regard.errors import Interrupted, RegardError

EXAMPLES = """examples:
  regard demo --out runs/demo
  regard train --config configs/example.yaml
  regard translate --model runs/demo/model --beam 5 < input.en > output.fr
  regard plot --model runs/demo/model "the black cat ate the mouse" -o cat.png
"""


def cmd_train(args: argparse.Namespace) -> None:
    from regard.config import load_config
    from regard.training.trainer import train
    cfg = load_config(args.config)
    if args.out:
        cfg.train.out_dir = args.out
    out = train(cfg, resume=args.resume)
    print(f"done: best model in {out / 'best'}", file=sys.stderr)


def input_lines(path: str | None) -> Iterator[str]:
    from regard.data.text import read_lines
    if path and path != "-":
        yield from read_lines(path, allow_empty=True)
        return
    raw = sys.stdin.buffer
    for number, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RegardError(f"<stdin>:{number}: invalid UTF-8 (byte {err.start + 1} of the line)") from None
        from regard.data.text import normalize
        yield normalize(text)


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


def cmd_translate(args: argparse.Namespace) -> None:
    from regard.translator import Translator
    translator = Translator.load(args.model)
    if not 1 <= args.nbest <= (args.beam or translator.cfg.search.beam):
        raise RegardError(f"--nbest must be between 1 and the beam size, got {args.nbest}")
    target = Path(args.output) if args.output else None
    sink = tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False, dir=target.parent,
                                       prefix=f".{target.name}.") if target else sys.stdout
    try:
        index = 0
        for chunk in chunks(input_lines(args.input), 500):
            found = translator.translate_nbest(chunk, beam=args.beam, nbest=args.nbest)
            for hyps in found:
                sink.write("\n".join(format_output(index, hyps, args.nbest, args.json)) + "\n")
                index += 1
            sink.flush()
    except BaseException:
        if target:
            sink.close()
            os.unlink(sink.name)
        raise
    if target:
        sink.close()
        os.replace(sink.name, target)


def cmd_plot(args: argparse.Namespace) -> None:
    from regard.plotting import plot_attention
    from regard.translator import Translator
    translator = Translator.load(args.model)
    if not translator.has_attention:
        raise RegardError(f"{args.model} was trained with attention: none; there is no attention to draw")
    if not args.sentence.strip():
        raise RegardError("the sentence to plot is empty")
    t = translator.translate([args.sentence], beam=args.beam)[0]
    if args.level == "word":
        path = plot_attention(t.word_attention, t.source_words, t.target_words, args.output,
                              title=f"{t.source}  →  {t.text}")
    else:
        path = plot_attention(t.attention, t.source_tokens, t.tokens, args.output,
                              title=f"{t.source}  →  {t.text}")
    print(f"{t.text}\nwrote {path}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> None:
    from regard.demo import run_demo
    run_demo(args.out, args.minutes, args.baseline_minutes, args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regard", description="Neural machine translation with attention: train, translate, "
        "and see what the decoder looks at.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (default: all cores)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML config (see configs/example.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the run in train.out_dir from last/")
    p.add_argument("--out", help="override train.out_dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate text, one line out per line in")
    p.add_argument("--model", required=True, help="model folder (or a training run folder)")
    p.add_argument("--beam", type=int, default=None, help="beam size; 1 = greedy (default: the model's)")
    p.add_argument("--nbest", type=int, default=1, help="print the N best as 'i ||| text ||| score'")
    p.add_argument("--input", "-i", help="input file (default: stdin); empty lines give empty lines")
    p.add_argument("--output", "-o", help="output file, replaced only when all input is translated")
    p.add_argument("--json", action="store_true", help="one JSON object per line with tokens and attention")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("plot", help="draw the attention diagram of one sentence")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("sentence", help="English sentence to translate and draw")
    p.add_argument("-o", "--output", default="attention.png", help="PNG file (default: attention.png)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the model's)")
    p.add_argument("--level", choices=["word", "subword"], default="word", help="label axes by word or subword")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("demo", help="train on the built-in English→French grammar, translate, draw")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--minutes", type=float, default=1.5, help="training time of the attention model")
    p.add_argument("--baseline-minutes", type=float, default=1.0, help="training time of the attention: none model")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except RegardError as err:
        print(f"regard: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"regard: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("regard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0
