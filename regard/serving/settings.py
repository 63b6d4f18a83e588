"""The server's request limits, scheduling and connection guards, each with its default, minimum and help.

``regard serve``'s options, their defaults and their checks, and the API's description of
its limits, all derive from :class:`ServeSettings`. No torch or FastAPI here: the command
line builds its parser from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

WILDCARD = "*"  # in allowed_hosts: any Host header


def setting(default: Any, minimum: float | None, help: str) -> Any:
    """A dataclass field whose metadata holds its smallest allowed value (None: a text) and a help line."""
    return field(default=default, metadata={"minimum": minimum, "help": help})


class SettingError(ValueError):
    """A setting out of range: ``name`` (the field) and ``problem`` (what is wrong with its value)."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class ServeSettings:
    """Request limits, scheduling and connection guards, fixed when the app is created.

    The work and response limits are checked before any decoding (:mod:`regard.serving.budget`).
    At their defaults a request holds a 2-core CPU for about a second with the Multi30k models
    (1-2 s when busy, outputs at their longest), a model call for under one, the demo model a
    fifth of that.
    """

    max_chars: int = setting(1000, 1, "longest text accepted, in characters")
    max_texts: int = setting(64, 1, "most texts in one request")
    max_beam: int = setting(10, 1, "largest beam a request may ask for")
    max_work: int = setting(4000, 1, "most model work one request may ask for, in subword steps: over its "
                            "texts, the source subwords plus beam × the longest output the search allows, and a "
                            "share per decoding step")
    max_response_mb: float = setting(8.0, 0.01, "largest response a request may ask for, in MB, as estimated "
                                     "before translating (the attention matrices make most of it)")
    deadline_s: float = setting(5.0, 0.01, "a request not answered within this many seconds gets a 503 and "
                                "its remaining work is dropped")
    batch_wait_ms: float = setting(5.0, 0, "how long a batch waits for more concurrent requests, in "
                                   "milliseconds; 0 = no waiting")
    max_batch_texts: int = setting(256, 1, "a batch stops gathering requests at this many texts")
    max_call_work: int = setting(1500, 1, "most work in one model call, in subword steps (decoding steps' "
                                 "share left out): longer requests are split into calls of this size, served "
                                 "shortest-left first (one text is never split)")
    max_queue: int = setting(256, 1, "most texts waiting for the model (at least max_texts); more get a 503 "
                             "with Retry-After")
    read_timeout_s: float = setting(10.0, 0.01, "a request's headers, and then its body, must arrive within "
                                    "this many seconds each, or the connection gets a 408 and is closed")
    keep_alive_s: float = setting(5.0, 0.01, "an idle keep-alive connection is closed after this many seconds")
    max_connections: int = setting(100, 1, "most open connections; one more gets a 503 and is closed")
    max_header_bytes: int = setting(16384, 1024, "largest request line and headers, in bytes; more gets a 431")
    allowed_hosts: str = setting("localhost,127.0.0.1,::1", None, "comma-separated names the Host header may "
                                 "give, with any port (against DNS rebinding); * = any; regard serve adds --host")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, minimum = getattr(self, f.name), f.metadata["minimum"]
            if minimum is not None and value < minimum:
                raise SettingError(f.name, f"must be at least {minimum}, got {value}")
        if self.max_queue < self.max_texts:
            raise SettingError("max_queue", f"must be at least max_texts ({self.max_texts}), got {self.max_queue}")
        if not self.host_names:
            raise SettingError("allowed_hosts", f"must name at least one host, got {self.allowed_hosts!r}")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: room for max_texts texts of \\u-escaped characters."""
        return self.max_texts * (12 * self.max_chars + 16) + 4096

    @property
    def host_names(self) -> frozenset[str]:
        """The allowed Host names, lower-cased, without brackets (``::1``); ``*`` allows any."""
        return frozenset(name.strip().strip("[]").lower() for name in self.allowed_hosts.split(",") if name.strip())

    def allowing(self, host: str) -> ServeSettings:
        """These settings with ``host`` (an address bound) among the allowed hosts, unless a wildcard."""
        name = host.strip("[]").lower()
        if name in ("", "0.0.0.0", "::") or name in self.host_names or WILDCARD in self.host_names:
            return self
        return replace(self, allowed_hosts=f"{self.allowed_hosts},{name}")


def setting_help(name: str) -> str:
    """The help line of the setting ``name``."""
    return next(f.metadata["help"] for f in fields(ServeSettings) if f.name == name)
