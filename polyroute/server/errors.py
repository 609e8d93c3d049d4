"""Every error answer in the OpenAI shape, with the right status; never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import orjson
from pydantic import ValidationError

from polyroute.config_problems import did_you_mean
from polyroute.errors import InvalidRequest, PolyrouteError
from polyroute.server.answers import Reply

log = logging.getLogger("polyroute.server")


def error_body_dict(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps(error_body_dict(message, type_, code, param))


def internal_error() -> Reply:
    """A bug of ours, already logged with its traceback: the client gets a 500 without one."""
    return Reply(error_body("The gateway hit an internal error; it has been logged.", "server_error",
                            code="internal_error"), 500)


def error_response(exc: PolyrouteError, headers: dict[str, str] | None = None) -> Reply:
    return Reply(orjson.dumps(exc.to_body()), exc.status, {**exc.headers(), **(headers or {})})


_TYPE_TAGS = frozenset(("str", "int", "float", "bool", "list", "dict", "none", "bytes"))


def from_validation(exc: ValidationError, fields: Collection[str] = ()) -> InvalidRequest:
    """The first schema error, naming the field the way a client wrote it; a field the schema does not have
    names the one of ``fields`` a typo away, if any."""
    first = exc.errors()[0]
    param = ""
    for part in first["loc"]:
        if isinstance(part, str) and (part in _TYPE_TAGS or not part.isidentifier()):
            continue  # the member of a union that was tried (``str``, ``list[str]``), not a field
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        text = f"Missing required parameter: '{param}'."
    elif first["type"] == "extra_forbidden":
        text = f"Unknown parameter: '{param}'{did_you_mean(param, set(fields))}."
    elif param == "n" and first["type"] == "less_than_equal":
        # Failover, rescue and billing all follow one answer: the limit is the gateway's, not the model's.
        text = ("Invalid value for 'n': polyroute answers one choice per request (n = 1), whatever the model; "
                "send the request several times for several answers.")
    else:
        text = f"Invalid value for '{param}': {msg}."
    return InvalidRequest(text, param=param or None)
