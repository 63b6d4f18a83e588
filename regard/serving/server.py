"""uvicorn, configured from :class:`ServeSettings`: timeouts, connection caps, and JSON errors at the HTTP level.

uvicorn closes idle keep-alive connections and bounds a request head's size, but it has no
deadline for the head to arrive, and its own refusals are plain text. :class:`GuardedProtocol`
adds the deadline (a client trickling its headers is answered 408 and closed), bounds a whole
head too (431), caps the open connections (one more is answered 503 and closed), and writes
those errors, and a malformed request's 400, as the app's JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import gc
import json
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from regard.serving.settings import ServeSettings


def raw_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole HTTP/1.1 JSON error response that closes the connection, as bytes."""
    body = json.dumps({"error": message}).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close", *(f"{k}: {v}" for k, v in headers)]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


class ServerConfig(uvicorn.Config):
    """A uvicorn config whose limits come from ``settings`` (kept for :class:`GuardedProtocol`)."""

    def __init__(self, app: Any, settings: ServeSettings, **options: Any):
        super().__init__(app, http=GuardedProtocol, timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
                         h11_max_incomplete_event_size=settings.max_header_bytes,
                         timeout_graceful_shutdown=max(1, round(settings.deadline_s) + 1), **options)
        self.settings = settings


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a connection cap and JSON protocol errors."""

    config: ServerConfig

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_timer: asyncio.TimerHandle | None = None
        self.waiting_after: object = None  # the cycle before the request whose head is awaited
        self.refused = len(self.connections) > self.config.settings.max_connections
        if self.refused:
            self._refuse(503, f"the server has its {self.config.settings.max_connections} connections open; "
                         "try again in a moment", (("retry-after", "1"),))
        else:
            self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # read and dropped until the client closes
        if self.header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._await_head()  # the first bytes of the next request on a kept-alive connection
        if self.header_timer is not None and self._head_too_long(data):
            limit = self.config.settings.max_header_bytes
            self._refuse(431, f"the request line and headers are over the {limit}-byte limit")
            return
        super().data_received(data)
        if self.header_timer is not None and self.cycle is not self.waiting_after:
            self._stop_clock()  # its head is complete: the app has the request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, as JSON."""
        body = json.dumps({"error": "the request is not valid HTTP/1.1"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _await_head(self) -> None:
        self.waiting_after = self.cycle
        self.head = bytearray()  # what has come of the head so far (h11 bounds only a head still incomplete)
        self.header_timer = self.loop.call_later(self.config.settings.read_timeout_s, self._head_late)

    def _head_too_long(self, data: bytes) -> bool:
        """Whether the head being read, with ``data``, is over ``max_header_bytes``."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        return (end + 4 if end >= 0 else len(self.head)) > self.config.settings.max_header_bytes

    def _stop_clock(self) -> None:
        if getattr(self, "header_timer", None) is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _head_late(self) -> None:
        self.header_timer = None
        if self.cycle is self.waiting_after and not self.transport.is_closing():
            self._refuse(408, f"the request headers did not arrive within {self.config.settings.read_timeout_s:g} s")

    def _refuse(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer ``status`` before any request was parsed, then close once the client has read it
        (closing at once, with its request unread, would reset the connection and lose the answer)."""
        self.refused = True
        self.transport.write(raw_error(status, message, headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(self.config.settings.read_timeout_s, self.transport.close)


def serve(app: Any, host: str, port: int, settings: ServeSettings) -> None:
    """Run ``app`` with uvicorn on ``host:port`` under ``settings`` until interrupted."""
    gc.collect()
    gc.freeze()  # the loaded models' objects: never scanned again by the garbage collector
    uvicorn.Server(ServerConfig(app, settings, host=host, port=port)).run()
