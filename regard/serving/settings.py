"""The server's request limits and batching, each with its default, minimum and help.

``regard serve``'s options, their defaults and their checks, and the API's description of
its limits, all derive from :class:`ServeSettings`. No torch or FastAPI here: the command
line builds its parser from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def setting(default: float, minimum: float, help: str) -> Any:
    """A dataclass field whose metadata holds its smallest allowed value and a help line."""
    return field(default=default, metadata={"minimum": minimum, "help": help})


class SettingError(ValueError):
    """A setting out of range: ``name`` (the field) and ``problem`` (what is wrong with its value)."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class ServeSettings:
    """Request limits and batching, fixed when the app is created."""

    max_chars: int = setting(1000, 1, "longest text accepted, in characters")
    max_texts: int = setting(64, 1, "most texts in one request")
    max_beam: int = setting(10, 1, "largest beam a request may ask for")
    batch_wait_ms: float = setting(5.0, 0, "how long a batch waits for more concurrent requests, in "
                                   "milliseconds; 0 = no waiting")
    max_batch_texts: int = setting(256, 1, "a batch stops gathering requests at this many texts")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, minimum = getattr(self, f.name), f.metadata["minimum"]
            if value < minimum:
                raise SettingError(f.name, f"must be at least {minimum}, got {value}")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: room for max_texts texts of \\u-escaped characters."""
        return self.max_texts * (12 * self.max_chars + 16) + 4096


def setting_help(name: str) -> str:
    """The help line of the setting ``name``."""
    return next(f.metadata["help"] for f in fields(ServeSettings) if f.name == name)
