"""Every error answer in the OpenAI shape, with the right status; never a traceback."""

from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from polyroute.errors import InvalidRequest, PolyrouteError

log = logging.getLogger("polyroute.server")

_HTTP_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def error_response(exc: PolyrouteError, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(exc.to_body()),
        status_code=exc.status,
        media_type="application/json",
        headers={**exc.headers(), **(headers or {})},
    )


def from_validation(exc: ValidationError) -> InvalidRequest:
    """The first schema error, naming the field the way a client wrote it."""
    first = exc.errors()[0]
    param = ""
    for part in first["loc"]:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        text = f"Missing required parameter: '{param}'."
    else:
        text = f"Invalid value for '{param}': {msg}."
    return InvalidRequest(text, param=param or None)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"Unknown path: {request.method} {request.url.path}"
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    body = error_body(message, _HTTP_TYPES.get(status, "invalid_request_error"), code=str(status))
    return Response(body, status_code=status, media_type="application/json")


async def unexpected(request: Request, exc: Exception) -> Response:
    # A bug of ours: log it with its traceback, answer in the OpenAI shape without one.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = error_body("The gateway hit an internal error; it has been logged.", "server_error", code="internal_error")
    return Response(body, status_code=500, media_type="application/json")
