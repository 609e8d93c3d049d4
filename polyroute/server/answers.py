"""What a handler returns, and the bytes of a response's head.

A ``Reply`` is a whole answer: status, headers and body, written in one piece. A
stream is ``polyroute.server.sse.EventStream``; both are ``Answer``s, which the
connection sends (``polyroute.server.http11``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

JSON = "application/json"

_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus
}


class Output(Protocol):
    """The connection an answer is written to."""

    def write(self, data: bytes) -> None: ...

    def paused(self) -> bool:
        """The client reads slower than we write: wait for ``drain`` before the next step."""

    def drain(self) -> Awaitable[None]: ...


class Answer(Protocol):
    status: int

    def send(self, out: Output, head: bytes) -> Awaitable[None]:
        """Write ``head`` (from ``Head.build``) and the body; the head leaves with the first body bytes."""

    def head_fields(self) -> list[bytes]:
        """The header lines of this answer (``b"name: value\\r\\n"``), framing included."""

    async def aclose(self) -> None:
        """Let go of what the answer holds when it will not be sent (its client left)."""


class Reply:
    """A whole answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None, content_type: str = JSON
    ) -> None:
        self.body = body
        self.status = status
        self.headers = {"content-type": content_type, **(headers or {})}

    def head_fields(self) -> list[bytes]:
        fields = header_lines(self.headers)
        fields.append(b"content-length: %d\r\n" % len(self.body))
        return fields

    async def send(self, out: Output, head: bytes) -> None:
        out.write(head + self.body)

    async def aclose(self) -> None:
        return None


class HeadReply(Reply):
    """The answer to ``HEAD``: a GET's status and headers, its length, and no body."""

    __slots__ = ("length",)

    def __init__(self, of: Reply) -> None:
        super().__init__(b"", of.status, of.headers, of.headers.get("content-type", JSON))
        self.length = len(of.body)

    def head_fields(self) -> list[bytes]:
        fields = header_lines(self.headers)
        fields.append(b"content-length: %d\r\n" % self.length)
        return fields


def header_lines(headers: Mapping[str, str]) -> list[bytes]:
    """``name: value`` lines; a value can never end the head early (CR and LF become spaces)."""
    lines = []
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            value = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    return lines


class Head:
    """The status line and the headers every answer carries, with the date rendered once a second."""

    __slots__ = ("_date", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._date = b""

    def build(self, status: int, fields: list[bytes], close: bool) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._date = b"date: " + formatdate(now, usegmt=True).encode("latin-1") + b"\r\n"
        line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode("latin-1")
        end = b"connection: close\r\n\r\n" if close else b"\r\n"
        return line + self._date + b"".join(fields) + end
