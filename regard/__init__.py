"""Regard: neural machine translation with attention, small enough to read.

``Translator`` and ``Translation`` (and so torch) are imported on first use, so that
``regard --help`` and ``import regard.errors`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from regard.errors import RegardError

if TYPE_CHECKING:
    from regard.translator import Translation, Translator

__all__ = ["RegardError", "Translation", "Translator"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Translation", "Translator"):
        return getattr(importlib.import_module("regard.translator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
