"""``regard align`` and ``regard evaluate-alignment``: thin wrappers around the alignment library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from regard.alignment.detok import LANGUAGE_HELP, LANGUAGES
from regard.alignment.links import DEFAULT_THRESHOLD, RULE_HELP, RULES, format_pharaoh, transpose
from regard.alignment.symmetrize import SYMMETRIZATIONS
from regard.errors import RegardError
from regard.options import add_inference_options, check_inference_options


def read_pairs(src: str, tgt: str) -> tuple[list[list[str]], list[list[str]]]:
    """Two line-aligned files as token lists (empty lines kept); a line-count mismatch names both."""
    from regard.data.text import iter_parallel
    pairs = list(iter_parallel(src, tgt, allow_empty=True))
    return [s.split() for s, _ in pairs], [t.split() for _, t in pairs]


def check_output(path: str | None, what: str) -> None:
    """Fail before any work when ``path`` (None or ``-``: stdout) cannot be written."""
    from regard.files import check_file_target
    if path and path != "-":
        check_file_target(path, what)


def cmd_align(args: argparse.Namespace) -> None:
    from regard.alignment.forced import align_pairs
    from regard.alignment.symmetrize import symmetrize
    from regard.translator import Translator
    check_inference_options(args)
    check_output(args.output, "-o")
    check_output(args.json, "--json")
    sources, targets = read_pairs(args.src, args.tgt)
    options = dict(rule=args.rule, threshold=args.threshold, capitalize=args.capitalize)
    forward = align_pairs(Translator.load(args.model, device=args.device), sources, targets,
                          src_lang=args.src_lang, tgt_lang=args.tgt_lang, **options)
    links = [a.links for a in forward]
    backward = None
    if args.reverse_model:
        backward = align_pairs(Translator.load(args.reverse_model, device=args.device), targets, sources,
                               src_lang=args.tgt_lang, tgt_lang=args.src_lang, **options)
        links = [symmetrize(f, transpose(b.links), args.symmetrize) for f, b in zip(links, backward)]
    write_output(args.output, "".join(format_pharaoh(x) + "\n" for x in links))
    if args.json:
        rows = [{"links": format_pharaoh(x), "forward": f.to_dict(),
                 **({"backward": backward[k].to_dict()} if backward else {})}
                for k, (x, f) in enumerate(zip(links, forward))]
        write_output(args.json, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    report_unknown(forward, sources, targets)


def write_output(path: str | None, text: str) -> None:
    from regard.files import write_text
    if path and path != "-":
        write_text(path, text)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def report_unknown(alignments, sources: list[list[str]], targets: list[list[str]]) -> None:
    """One line on stderr: how many given tokens hold a subword the model does not know."""
    src = sum(a.unknown_source for a in alignments), sum(map(len, sources))
    tgt = sum(a.unknown_target for a in alignments), sum(map(len, targets))
    pairs = "sentence pair" if len(alignments) == 1 else "sentence pairs"
    print(f"aligned {len(alignments)} {pairs}; tokens unknown to the model: "
          f"source {src[0]} of {src[1]}, target {tgt[0]} of {tgt[1]}", file=sys.stderr)


def cmd_evaluate_alignment(args: argparse.Namespace) -> None:
    from regard.alignment.gold import read_naacl, read_pharaoh, read_tokens
    from regard.alignment.score import score
    from regard.files import write_json
    check_output(args.json_out, "--json-out")
    if bool(args.src) != bool(args.tgt):
        raise RegardError("give both --src and --tgt (for the bounds checks), or neither")
    src_len = tgt_len = None
    if args.src:
        sources, targets = read_pairs(args.src, args.tgt)
        src_len, tgt_len = [len(s) for s in sources], [len(t) for t in targets]
    gold = read_naacl(args.gold, src_len, tgt_len, reverse=args.reverse)
    predicted = read_pharaoh(args.links, src_len, tgt_len)
    if len(predicted) != len(gold):
        raise RegardError(f"{args.links}: {len(predicted)} lines, but {args.gold} has {len(gold)} sentences")
    result = score(predicted, gold)
    print(f"AER {100 * result.aer:.1f}  precision {100 * result.precision:.1f}  recall {100 * result.recall:.1f}"
          f"  ({result.predicted} links; gold {result.sure} sure, {result.possible} sure or possible)")
    if args.json_out:
        write_json(args.json_out, {"gold": args.gold, "links": args.links, **result.to_dict()})


def weight(text: str) -> float:
    """An argparse ``type``: an attention weight in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def add_align_parsers(sub) -> None:
    """``regard align`` and ``regard evaluate-alignment``."""
    p = sub.add_parser("align", help="word alignments from attention (Pharaoh i-j lines), one or both directions")
    p.add_argument("--model", required=True, help="model folder (source → target)")
    p.add_argument("--src", required=True, help="source sentences, one per line (tokenised or not)")
    p.add_argument("--tgt", required=True, help="their translations, line-aligned with --src")
    p.add_argument("-o", "--output", help="Pharaoh links file (default: stdout)")
    p.add_argument("--json", metavar="FILE", help="also write one JSON object per pair: tokens, links and "
                   "the word attention matrix of each direction")
    p.add_argument("--rule", choices=tuple(RULES), default="argmax", help=f"{RULE_HELP} (default: %(default)s)")
    p.add_argument("--threshold", type=weight, default=DEFAULT_THRESHOLD,
                   help="weight a link needs with --rule threshold or both (default: %(default)s)")
    p.add_argument("--reverse-model", metavar="DIR", help="a target → source model: align both directions "
                   "and symmetrise")
    p.add_argument("--symmetrize", choices=tuple(SYMMETRIZATIONS), default="grow-diag-final-and",
                   help="how the two directions are combined (default: %(default)s)")
    for side in ("src", "tgt"):
        p.add_argument(f"--{side}-lang", choices=tuple(LANGUAGES), default="none",
                       help=f"{side} side: {LANGUAGE_HELP} (default: %(default)s)")
    p.add_argument("--capitalize", action="store_true", help="upper-case each sentence's first letter "
                   "before the model reads it (for lower-cased gold sets)")
    add_inference_options(p, ("device",))
    p.set_defaults(func=cmd_align)
    p = sub.add_parser("evaluate-alignment", help="AER, precision and recall of links against gold "
                       "Sure/Possible links (NAACL 2003 format)")
    p.add_argument("--gold", required=True, help="gold links: 'sentence src_pos tgt_pos S|P' lines, 1-based")
    p.add_argument("--links", required=True, help="predicted links: one Pharaoh line per sentence, 0-based")
    p.add_argument("--src", help="tokenised source sentences, to check that every link is in range")
    p.add_argument("--tgt", help="tokenised target sentences (with --src)")
    p.add_argument("--reverse", action="store_true", help="the gold's second column is the target side")
    p.add_argument("--json-out", help="write the scores as JSON")
    p.set_defaults(func=cmd_evaluate_alignment)
