"""Pure ASGI middleware in front of the app: the Host header, and the request body's size and time.

Both answer with the same JSON ``{"error": ...}`` as the app, before any route runs.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regard.serving.errors import error_response
from regard.serving.settings import WILDCARD

CLOSE = {"connection": "close"}  # the rest of an unread body is not worth reading


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of the request header ``name`` (lower-case), or None."""
    return next((value for key, value in scope["headers"] if key == name), None)


def host_name(value: str) -> str:
    """A Host header → its name, lower-cased, without port or IPv6 brackets; one trailing dot dropped."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    name, colon, port = value.rpartition(":")
    if colon and ":" not in name and (port.isdigit() or not port):
        value = name
    return value[:-1] if value.endswith(".") else value


class HostCheck:
    """Answer 400 to a request whose Host header names none of ``hosts`` (a page served under
    another name, through DNS rebinding, cannot reach the API)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]):
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or WILDCARD in self.hosts:
            await self.app(scope, receive, send)
            return
        raw = header(scope, b"host")
        if raw is not None and host_name(raw.decode("latin-1")) in self.hosts:
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if raw is None else f"the Host header {raw.decode('latin-1')[:100]!r}"
        message = (f"{shown} is not a name this server answers to ({', '.join(sorted(self.hosts))}); "
                   "start it with --allowed-hosts to add one")
        await error_response(400, message, CLOSE)(scope, receive, send)


class BodyLimit:
    """Read the whole request body first: 413 when it is over ``max_bytes`` (refused without
    buffering it), 408 when it has not all arrived within ``timeout_s``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length") or b""
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive)
        except TimeoutError:
            message = f"the request body did not arrive within {self.timeout_s:g} s"
            await error_response(408, message, CLOSE)(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        if len(body) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The body, None if the client disconnected, or its first bytes past ``max_bytes``."""
        chunks, size, more = [], 0, True
        while more and size <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"the request body is over the {self.max_bytes}-byte limit", CLOSE)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first hands over the buffered body, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
