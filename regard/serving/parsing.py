"""Strict JSON request bodies: UTF-8 only, and no lone surrogate in any string, key or value.

Python's ``json`` accepts ``"\\ud800"`` (and FastAPI's UTF-16 or surrogate-escaped bytes), giving a
``str`` that cannot be encoded again: echoed in an error, it would break the response. Here such
a body is a 4xx that says where the problem is, before any field is validated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from regard.serving.errors import ApiError


def strict_json(body: bytes) -> Any:
    """UTF-8 JSON bytes → the value; :class:`ApiError` for what ``json`` would let through or choke on.

    Syntax errors stay ``json.JSONDecodeError`` (FastAPI answers them with their position)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"the request body is not valid JSON (it must be UTF-8 text; byte "
                       f"{err.object[err.start]:#04x} at offset {err.start} is not)") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise ApiError(400, "the request body is not valid JSON here (it is nested too deeply)") from None
    except ValueError:  # e.g. an integer of more than 4,300 digits
        raise ApiError(400, "the request body is not valid JSON here (a number in it is too long)") from None
    where = lone_surrogate(value)
    if where is not None:
        raise ApiError(422, f"{where} is not valid Unicode (it holds a lone surrogate, such as \\ud800)")
    return value


def lone_surrogate(value: Any) -> str | None:
    """Where the first string (key or value) holding a lone surrogate is, e.g. ``texts[2]``; None if nowhere."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str) and not encodable(item):
            return where or "the request body"
        if isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for key, v in reversed(list(item.items())):
                if not encodable(key):
                    return f"a field name in {where or 'the request body'}"
                stack.append((f"{where}.{key}" if where else key, v))
    return None


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class StrictJsonRequest(Request):
    """A request whose :meth:`json` is :func:`strict_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route that parses its JSON body with :func:`strict_json` (FastAPI's custom route class hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
