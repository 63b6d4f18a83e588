"""The inference options that ``translate``, ``evaluate``, ``plot`` and ``serve`` share, defined once.

Each option's flag, choices, default, limits and help come from :data:`INFERENCE_OPTIONS`
(numbers are checked by argparse as they are parsed, see :func:`at_least`), and the checks
argparse cannot make from :func:`check_inference_options`. Input lines are bounded by
:func:`bounded_lines`. No torch here: ``regard --help`` builds every parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, get_args

from regard.config import Stopping
from regard.device import DEVICE_HELP, check_device_name
from regard.errors import RegardError
from regard.precision import CPU_ONLY, PRECISIONS

MAX_CHARS = 1000  # the longest input line translated by default, in characters (a few hundred subwords)
MAX_BEAM = 64  # the widest beam accepted by default


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``, else an error naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = f"whole number >= {minimum}"
    return parse


INFERENCE_OPTIONS: dict[str, dict[str, Any]] = {
    "beam": {"type": at_least(1), "default": None, "help": "beam size; 1 = greedy (default: the model's)"},
    "precision": {"choices": tuple(PRECISIONS), "default": "fp32",
                  "help": "inference weights: bf16 (~1.5x faster on CPU) or int8 (~2x, CPU only), BLEU within "
                          "a few tenths (default: fp32)"},
    "stopping": {"choices": get_args(Stopping), "default": None,
                 "help": "when beam search stops: exact (provably the best) or first (as soon as the best "
                         "candidate ends, as OpenNMT-py does; faster). Default: the model's"},
    "workers": {"type": at_least(1), "default": 1,
                "help": "processes that share the batches, of one thread each (or of 'regard --threads N' "
                        "threads): 2 on a 2-core CPU translate a file 1.3-1.7x faster than one process with 2 "
                        "threads (same output; a few seconds to start). Default: 1, this process"},
    "device": {"default": "auto", "metavar": "DEVICE",
               "help": f"where the model runs: {DEVICE_HELP}; {' and '.join(CPU_ONLY)} runs on the CPU only "
                       "(auto then picks it)"},
    "max_chars": {"type": at_least(1), "default": MAX_CHARS, "metavar": "N",
                  "help": f"longest input line, in characters (default: {MAX_CHARS}); a longer one is an error "
                          "naming its line, or is cut with --truncate"},
    "truncate": {"action": "store_true", "default": False,
                 "help": "cut lines longer than --max-chars to that length, saying so on stderr for each, "
                         "instead of stopping"},
    "max_beam": {"type": at_least(1), "default": MAX_BEAM, "metavar": "N",
                 "help": f"widest beam accepted, the model's default included (default: {MAX_BEAM})"},
}


def flag(name: str) -> str:
    """The command-line flag of option or setting ``name``: ``max_chars`` → ``--max-chars``."""
    return "--" + name.replace("_", "-")


def add_inference_options(parser: argparse.ArgumentParser, names: Sequence[str] = tuple(INFERENCE_OPTIONS)) -> None:
    """Add the options ``names`` (keys of :data:`INFERENCE_OPTIONS`, all by default) to ``parser``."""
    for name in names:
        parser.add_argument(flag(name), **INFERENCE_OPTIONS[name])


def check_beam(beam: int | None, max_beam: int, model_beam: int = 1) -> None:
    """Raise :class:`RegardError` for a beam (``--beam``, or the model's when that is None) wider
    than ``max_beam`` (``--max-beam``)."""
    what = f"{flag('beam')} {beam}" if beam is not None else f"the model's beam ({model_beam}, search.beam)"
    if (beam or model_beam) > max_beam:
        raise RegardError(f"{what} is wider than {flag('max_beam')} {max_beam}: "
                          f"use a smaller {flag('beam')}, or raise {flag('max_beam')}")


def check_inference_options(args: argparse.Namespace) -> None:
    """Raise :class:`RegardError` for what argparse cannot check: a beam or workers below 1 (when
    set by code), a beam over ``--max-beam``, an unknown device name."""
    for name in ("beam", "workers"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise RegardError(f"{flag(name)} must be at least 1, got {value}")
    if getattr(args, "beam", None) is not None and hasattr(args, "max_beam"):
        check_beam(args.beam, args.max_beam)
    if hasattr(args, "device"):
        check_device_name(args.device, flag("device"))


def bounded_lines(lines: Iterable[str], max_chars: int, truncate: bool, where: str,
                  warn: Callable[[str], None]) -> Iterator[str]:
    """``lines``, each at most ``max_chars`` characters: a longer one is a :class:`RegardError`
    naming it (``where:N``), or with ``truncate`` is cut to ``max_chars`` and said through ``warn``."""
    for number, line in enumerate(lines, 1):
        if len(line) > max_chars:
            if not truncate:
                raise RegardError(f"{where}:{number}: {len(line)} characters, more than {flag('max_chars')} "
                                  f"{max_chars}: split the line, raise {flag('max_chars')} or add "
                                  f"{flag('truncate')}")
            warn(f"{where}:{number}: {len(line)} characters, truncated to {max_chars} ({flag('max_chars')})")
            line = line[:max_chars]
        yield line
