"""Every failure becomes a JSON ``{"error": "..."}``: a 4xx that says what to fix.

A 500 (same shape) is only the last line of defence for a bug; no input should reach it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from regard.serving.schemas import TranslateRequest

log = logging.getLogger("regard.serving")


class ApiError(HTTPException):
    """A request refused with ``status``, ``message`` and ``headers`` (an HTTPException, so that
    FastAPI passes it through while it parses a body)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, message, headers)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


SHOWN_PROBLEMS = 5  # a body with thousands of wrong values gets a short answer


EXAMPLE = '{"text": "the black cat ate the mouse"}'


def describe_validation(errors: list[dict], content_type: str | None) -> tuple[int, str]:
    """Pydantic's error list (and the request's Content-Type) → (status, one readable line)."""
    for e in errors:
        if e.get("type") == "json_invalid":
            detail = e.get("ctx", {}).get("error", "")
            return 400, "the request body is not valid JSON" + (f" ({detail})" if detail else "")
    parts = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        if not loc:  # the body as a whole is wrong
            if not (content_type or "").startswith("application/json"):
                return 415, f"send the body as JSON with the header Content-Type: application/json, e.g. {EXAMPLE}"
            if e.get("type") == "missing":
                return 400, f"the request body is empty; send a JSON object, e.g. {EXAMPLE}"
            return 400, f"the request body must be a JSON object, e.g. {EXAMPLE}"
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if e.get("type") == "extra_forbidden":
            parts.append(f"unknown field '{where}' (allowed: {', '.join(TranslateRequest.model_fields)})")
        else:
            parts.append(f"{where}: {e.get('msg', 'invalid value')}")
    more = f"; and {len(parts) - SHOWN_PROBLEMS} more" if len(parts) > SHOWN_PROBLEMS else ""
    return 422, "; ".join(parts[:SHOWN_PROBLEMS]) + more or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Turn API, validation, HTTP and unexpected errors into ``{"error": ...}`` responses."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(*describe_validation(list(err.errors()), request.headers.get("content-type")))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        message = str(err.detail)
        if err.status_code == 400 and "parsing the body" in message:  # FastAPI's words for undecodable bytes
            message = "the request body is not valid JSON (it must be UTF-8 text)"
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=err)
        return error_response(500, f"internal error: {type(err).__name__}")
