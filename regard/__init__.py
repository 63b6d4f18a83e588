"""Regard: neural machine translation with attention, small enough to read."""

from regard.errors import RegardError
from regard.translator import Translation, Translator

__all__ = ["RegardError", "Translation", "Translator"]
__version__ = "0.1.0"
