"""The inference options that ``translate``, ``evaluate``, ``plot`` and ``serve`` share, defined once.

Each option's flag, choices, default and help come from :data:`INFERENCE_OPTIONS`, and the
checks argparse cannot make from :func:`check_inference_options`. No torch here: ``regard
--help`` builds every parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, get_args

from regard.config import Stopping
from regard.device import DEVICE_HELP, check_device_name
from regard.errors import RegardError
from regard.precision import CPU_ONLY, PRECISIONS

INFERENCE_OPTIONS: dict[str, dict[str, Any]] = {
    "beam": {"type": int, "default": None, "help": "beam size; 1 = greedy (default: the model's)"},
    "precision": {"choices": tuple(PRECISIONS), "default": "fp32",
                  "help": "inference weights: bf16 (~1.5x faster on CPU) or int8 (~2x, CPU only), BLEU within "
                          "a few tenths (default: fp32)"},
    "stopping": {"choices": get_args(Stopping), "default": None,
                 "help": "when beam search stops: exact (provably the best) or first (as soon as the best "
                         "candidate ends, as OpenNMT-py does; faster). Default: the model's"},
    "workers": {"type": int, "default": 1,
                "help": "processes that share the batches, of one thread each (or of 'regard --threads N' "
                        "threads): 2 on a 2-core CPU translate a file 1.3-1.7x faster than one process with 2 "
                        "threads (same output; a few seconds to start). Default: 1, this process"},
    "device": {"default": "auto", "metavar": "DEVICE",
               "help": f"where the model runs: {DEVICE_HELP}; {' and '.join(CPU_ONLY)} runs on the CPU only "
                       "(auto then picks it)"},
}


def flag(name: str) -> str:
    """The command-line flag of option or setting ``name``: ``max_chars`` → ``--max-chars``."""
    return "--" + name.replace("_", "-")


def add_inference_options(parser: argparse.ArgumentParser, names: Sequence[str] = tuple(INFERENCE_OPTIONS)) -> None:
    """Add the options ``names`` (keys of :data:`INFERENCE_OPTIONS`, all by default) to ``parser``."""
    for name in names:
        parser.add_argument(flag(name), **INFERENCE_OPTIONS[name])


def check_inference_options(args: argparse.Namespace) -> None:
    """Raise :class:`RegardError` for what argparse cannot check: a beam or workers below 1,
    an unknown device name."""
    for name in ("beam", "workers"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise RegardError(f"{flag(name)} must be at least 1, got {value}")
    if hasattr(args, "device"):
        check_device_name(args.device, flag("device"))
